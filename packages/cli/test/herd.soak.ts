/**
 * C16 at full length: 2000 SDK clients with the SDK's default 6 s spread
 * on two nodes behind nginx, attempts counted per second for 60 s after
 * a kill -9 of the node holding about half, then after an nginx restart.
 */
import { DEFAULT_RECONNECT_SPREAD_MS } from "@switchboard/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { killNodes } from "../../server/test/node-process.js";
import { startRedis, type OwnRedis } from "../../server/test/redis-server.js";
import { Herd, expectSpreadReconnects, untilStable } from "./herd.js";
import { NGINX, NO_NGINX } from "./nginx-process.js";

const CLIENTS = 2_000;

/** The bounds docs/SCALING.md gives for the default spread. */
const LIMITS = {
  spreadMs: DEFAULT_RECONNECT_SPREAD_MS,
  windowMs: 60_000,
  backWithinMs: 15_000,
  largestShare: 0.22,
} as const;

let redis: OwnRedis;
let herd: Herd;

beforeAll(async () => {
  if (!NGINX) throw new Error(NO_NGINX);
  redis = await startRedis();
  herd = await Herd.start(
    {
      redisUrl: redis.url,
      clients: CLIENTS,
      channels: 20,
      reconnectSpreadMs: LIMITS.spreadMs,
      publishIntervalMs: 2_000,
    },
    "soak",
  );
});

afterAll(async () => {
  await herd?.stop();
  killNodes();
  await redis?.stop();
});

describe(`a herd of ${CLIENTS} clients, default timers (C16)`, () => {
  it("spreads the reconnects of a node killed by -9", async () => {
    const victims = herd.on(0);
    expect(victims.length).toBeGreaterThan(0.3 * CLIENTS);
    const result = await expectSpreadReconnects(
      herd,
      "kill -9, 6 s spread",
      () => victims,
      async () => herd.kill(0),
      LIMITS,
    );
    expect(result.buckets.length).toBe(60);
  });

  it("spreads the reconnects of every client when nginx restarts", async () => {
    await herd.restartNode(0);
    await untilStable(herd);
    await expectSpreadReconnects(
      herd,
      "nginx restart, 6 s spread",
      () => [...herd.clients],
      () => herd.restartNginx(),
      LIMITS,
    );
  });
});
