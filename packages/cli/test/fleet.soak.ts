/**
 * C06 and C09 at full length with the default timers: SDK clients on
 * node processes behind nginx while 500 messages a second are published
 * for about a minute; one node killed with -9, then a rolling restart.
 * Every client must get every message once, in order, and recover.
 */
import { afterEach, beforeAll, afterAll, describe, expect, it } from "vitest";

import { sleep } from "../../server/test/helpers.js";
import { killNodes } from "../../server/test/node-process.js";
import { startRedis, type OwnRedis } from "../../server/test/redis-server.js";
import { Herd, herding, report, type HerdClient } from "./herd.js";
import { NGINX, NO_NGINX } from "./nginx-process.js";

/** 50 channels, each published on every 100 ms: 500 messages a second. */
const LOAD = { channels: 50, publishIntervalMs: 100 } as const;

let redis: OwnRedis;
let herd: Herd | undefined;

beforeAll(async () => {
  if (!NGINX) throw new Error(NO_NGINX);
  redis = await startRedis();
});

afterEach(async () => {
  await herd?.stop();
  herd = undefined;
  killNodes();
});

afterAll(async () => {
  await redis?.stop();
});

/** Every resubscribe of `clients` since `from` answered `recovered: true`. */
function expectRecovered(clients: readonly HerdClient[], from: number) {
  for (const client of clients) {
    for (const channel of client.channels) {
      const mine = client.resubscribes.get(channel)!;
      const since = mine.filter(({ at }) => at >= from);
      expect(since.every(({ recovered }) => recovered === true)).toBe(true);
    }
  }
}

describe("a fleet under 500 messages a second, default timers", () => {
  it("moves a killed node's clients with no gap (C06)", async () => {
    herd = await Herd.start(
      { redisUrl: redis.url, clients: 200, nodes: 2, ...LOAD },
      "c06",
    );
    const victims = herd.on(0);
    herd.startPublishing();
    await sleep(20_000);
    const at = herd.kill(0);
    await herd.back(victims, at, 30_000);
    await sleep(Math.max(0, at + 40_000 - Date.now()));
    await herd.stopPublishing();
    await herd.delivered(30_000);

    const result = herding(victims, at, 1_000, 40_000);
    const published = [...herd.top.values()].reduce((a, b) => a + b, 0);
    report("C06 kill -9 at 500 msg/s", {
      victims: victims.length,
      published,
      publishRetries: herd.publishRetries,
      backMs: result.backMs,
      firstAttemptMs: result.firstAttemptMs,
    });
    expect(victims.length).toBeGreaterThan(0);
    expect(herd.gaps()).toEqual([]);
    expectRecovered(victims, at);
    expect(result.backMs).toBeLessThan(15_000);
  });

  it("delivers once and in order in a rolling restart (C09)", async () => {
    herd = await Herd.start(
      { redisUrl: redis.url, clients: 200, nodes: 3, ...LOAD },
      "c09",
    );
    herd.startPublishing();
    const from = Date.now();
    await sleep(5_000);
    const statuses: (number | null)[] = [];
    const drainMs: number[] = [];
    for (let i = 0; i < herd.nodes.length; i++) {
      const started = Date.now();
      statuses.push(await herd.roll(i));
      drainMs.push(Date.now() - started);
      await sleep(10_000);
    }
    await herd.stopPublishing();
    await herd.delivered(30_000);

    const moves = herd.clients.flatMap((c) =>
      c.attempts.filter((t) => t >= from),
    );
    const published = [...herd.top.values()].reduce((a, b) => a + b, 0);
    report("C09 rolling restart at 500 msg/s", {
      clients: herd.clients.length,
      published,
      publishRetries: herd.publishRetries,
      moves: moves.length,
      drainMs,
      runMs: Date.now() - from,
    });
    expect(statuses).toEqual([0, 0, 0]);
    expect(moves.length).toBeGreaterThanOrEqual(herd.clients.length);
    expect(herd.gaps()).toEqual([]);
    expectRecovered(herd.clients, from);
  });
});
