/**
 * C02 at full length with the default timers: node A's link to Redis is
 * black-holed for 30 s (no FIN, no RST) through a proxy that keeps its
 * sockets open; 10 s after the link is back, 5 messages go out through
 * node B and A's subscriber must get all of them, with nothing restarted.
 */
import { afterAll, describe, expect, it } from "vitest";

import {
  http,
  isMessage,
  sleep,
  subscribedClient,
  waitUntil,
} from "./helpers.js";
import { killNodes, spawnNode } from "./node-process.js";
import { startRedis } from "./redis-server.js";
import { startProxy } from "./tcp-proxy.js";

const API_KEY = "soak-test-key-0123456789";

afterAll(() => killNodes());

/** /readyz's status, 0 when the node does not answer. */
async function readiness(port: number): Promise<number> {
  return (
    (await http(port, "GET", "/readyz").catch(() => undefined))?.status ?? 0
  );
}

describe("a node whose Redis link is black-holed for 30 s (C02)", () => {
  it("notices, reconnects and hears every later message", async () => {
    // Redis drops a silent peer after 10 s, as in the field case.
    const redis = await startRedis(undefined, ["--tcp-keepalive", "10"]);
    const proxy = await startProxy(redis.port);
    try {
      const a = await spawnNode(`redis://127.0.0.1:${proxy.port}`, {
        apiKey: API_KEY,
        nodeId: "a",
      });
      const b = await spawnNode(redis.url, { apiKey: API_KEY, nodeId: "b" });
      const { client } = await subscribedClient(a.port, "room1");

      proxy.stall();
      const stalledAt = Date.now();
      await waitUntil(async () => (await readiness(a.port)) === 503, 30_000);
      const noticedMs = Date.now() - stalledAt;
      await sleep(stalledAt + 30_000 - Date.now());
      proxy.restore();
      const restoredAt = Date.now();
      await waitUntil(async () => (await readiness(a.port)) === 200, 30_000);
      const readyMs = Date.now() - restoredAt;

      await sleep(restoredAt + 10_000 - Date.now());
      const sentAt = Date.now();
      for (let i = 1; i <= 5; i++) {
        const sent = await http(b.port, "POST", "/api/publish", {
          headers: { Authorization: `Bearer ${API_KEY}` },
          body: { channel: "room1", data: i },
        });
        expect(sent.status).toBe(200);
      }
      await client.waitForCount(isMessage("room1"), 5, 30_000);
      const deliveredMs = Date.now() - sentAt;

      process.stdout.write(
        `C02: ${JSON.stringify({ noticedMs, readyMs, deliveredMs })}\n`,
      );
      expect(client.messages("room1").map((m) => m.data)).toEqual([
        1, 2, 3, 4, 5,
      ]);
      expect(client.messages("room1").map((m) => m.offset)).toEqual([
        1, 2, 3, 4, 5,
      ]);
      expect(client.isOpen).toBe(true);
      expect(noticedMs).toBeLessThan(30_000);
      expect(readyMs).toBeLessThan(30_000);
    } finally {
      killNodes();
      await proxy.close();
      await redis.stop();
    }
  });
});
