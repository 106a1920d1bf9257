/**
 * C16, scaled down: 2000 SDK clients on two nodes behind nginx lose their
 * connection at once. The SDK's first reconnect spreads over 3 s here
 * instead of 6 s, and attempts are counted per sixth of that, so each
 * 500 ms bucket stands for one second of the full-length run in
 * herd.soak.ts. (At 1.5 s, the lag of 2000 clients' event loop on two
 * shared cores, up to about half a second, would decide the buckets
 * rather than the SDK.) Without nginx the tests are skipped, except under
 * CI=true, where they fail.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";

import { STABLE_CONNECTION_MS } from "@switchboard/client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

import { sleep } from "../../server/test/helpers.js";
import { killNodes } from "../../server/test/node-process.js";
import { startRedis, type OwnRedis } from "../../server/test/redis-server.js";
import { Herd, herding, type HerdClient } from "./herd.js";
import { NGINX, NGINX_REQUIRED, NO_NGINX } from "./nginx-process.js";

const CLIENTS = 2_000;
const SPREAD_MS = 3_000;
/** A sixth of the spread: uniform first attempts put 16.7 % in each. */
const BUCKET_MS = SPREAD_MS / 6;
/** Attempts are counted over this long after the drop. */
const WINDOW_MS = 12_000;
/**
 * Every client that dropped is back and resubscribed within this
 * (docs/SCALING.md): the spread, a retry for the few whose first attempt
 * failed, and room for 2000 clients, two nodes and nginx on 2 cores.
 */
const BACK_WITHIN_MS = 10_000;
/** Above the 16.7 % of an even spread, with room for chance. */
const LARGEST_SHARE = 0.22;

let redis: OwnRedis | undefined;
let herd: Herd | undefined;

beforeAll(async () => {
  if (!NGINX) {
    if (NGINX_REQUIRED) throw new Error(`CI=true: ${NO_NGINX}`);
    return;
  }
  redis = await startRedis();
  herd = await Herd.start(
    {
      redisUrl: redis.url,
      clients: CLIENTS,
      channels: 20,
      reconnectSpreadMs: SPREAD_MS,
      publishIntervalMs: 5_000,
    },
    "scaled",
  );
}, 90_000);

beforeEach((context) => {
  if (!NGINX) context.skip(NO_NGINX);
});

afterAll(async () => {
  await herd?.stop();
  killNodes();
  await redis?.stop();
});

/** One line of figures for the test log. */
function report(what: string, figures: Record<string, unknown>): void {
  process.stdout.write(`${what}: ${JSON.stringify(figures)}\n`);
}

/**
 * Drops `victims` with `drop`, under load, and checks C16's Right line:
 * attempts spread, everyone back and recovered, nothing lost.
 */
async function expectSpreadReconnects(
  what: string,
  victims: () => HerdClient[],
  drop: () => Promise<number>,
): Promise<void> {
  const fleet = herd!;
  fleet.startPublishing();
  await sleep(1_000);
  const dropped = victims();
  const bystanders = fleet.clients.filter((c) => !dropped.includes(c));
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const at = await drop();
  // Waits past the bound, so a slow run still reports its figures.
  await fleet.back(dropped, at, 3 * BACK_WITHIN_MS);
  await fleet.stopPublishing();
  await fleet.delivered(10_000);

  const result = herding(dropped, at, BUCKET_MS, WINDOW_MS);
  lag.disable();
  report(what, {
    ...result,
    publishRetries: fleet.publishRetries,
    // How late this process's timers fired: attempts move by as much.
    lagMsMax: Math.round(lag.max / 1e6),
  });
  expect(result.largestShare).toBeLessThan(LARGEST_SHARE);
  expect(result.late).toBe(0);
  // First attempts: no spike but a spread, drawn below the spread's end.
  expect(result.firstBuckets.filter((n) => n > 0).length).toBeGreaterThan(4);
  expect(result.drawnMaxMs).toBeLessThan(SPREAD_MS);
  for (const share of result.drawnBuckets.slice(0, 6)) {
    expect(share / dropped.length).toBeGreaterThan(0.11);
    expect(share / dropped.length).toBeLessThan(LARGEST_SHARE);
  }
  expect(result.backMs).toBeLessThan(BACK_WITHIN_MS);
  for (const client of dropped) {
    for (const channel of client.channels) {
      const mine = client.resubscribes.get(channel)!;
      expect(mine.filter(({ at: when }) => when >= at).length).toBe(1);
      expect(mine.at(-1)!.recovered).toBe(true);
    }
  }
  for (const client of bystanders) {
    expect(client.attempts.filter((t) => t >= at)).toEqual([]);
  }
  expect(fleet.gaps()).toEqual([]);
}

describe(`a herd of ${CLIENTS} clients on two nodes behind nginx (C16)`, () => {
  it("spreads the reconnects of a node killed by -9", async () => {
    const victims = herd!.on(0);
    expect(victims.length).toBeGreaterThan(0.3 * CLIENTS);
    expect(victims.length).toBeLessThan(0.7 * CLIENTS);
    await expectSpreadReconnects(
      "kill -9",
      () => victims,
      async () => herd!.kill(0),
    );
  }, 40_000);

  it("spreads the reconnects of every client when nginx restarts", async () => {
    await herd!.restartNode(0);
    // A connection dropped sooner than this keeps its backoff doubling
    // instead of drawing from the spread again.
    const lastBack = Math.max(...herd!.clients.map((c) => c.lastResubscribe()));
    await sleep(lastBack + STABLE_CONNECTION_MS - Date.now());
    await expectSpreadReconnects(
      "nginx restart",
      () => [...herd!.clients],
      () => herd!.restartNginx(),
    );
  }, 40_000);
});
