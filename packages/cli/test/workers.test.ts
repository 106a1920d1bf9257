import { execFileSync } from "node:child_process";

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";

import { startRedis, type OwnRedis } from "../../server/test/redis-server.js";
import { freePort, killAll, startNode, until } from "./cli-process.js";

let redis: OwnRedis;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(() => redis.stop());

afterEach(killAll);

/** Two workers with the redis engine on a free port. */
async function startGroup(extra: string[] = []) {
  const port = await freePort();
  const group = await startNode([
    "--workers",
    "2",
    "--engine",
    "redis",
    "--redis-url",
    redis.url,
    "--port",
    String(port),
    ...extra,
  ]);
  return { port, group };
}

/** A subscriber over a raw socket that counts what reaches it. */
function subscriber(port: number, channel: string) {
  return new Promise<{ ws: WebSocket; received: unknown[] }>(
    (resolve, reject) => {
      const received: unknown[] = [];
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, "switchboard.v1");
      ws.on("error", reject);
      ws.on("open", () => {
        ws.send('{"type":"connect","id":1}');
        ws.send(JSON.stringify({ type: "subscribe", id: 2, channel }));
      });
      ws.on("message", (raw) => {
        const frame = JSON.parse(String(raw));
        if (frame.id === 2) resolve({ ws, received });
        if (frame.type === "message") received.push(frame.data);
      });
    },
  );
}

/** `switchboard_connections` of each worker, from the group's metrics. */
async function connectionsByWorker(port: number): Promise<number[]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...text.matchAll(/^switchboard_connections\{worker="(\d)"\} (\d+)/gm)]
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((match) => Number(match[2]));
}

describe("switchboard start --workers", () => {
  it("spreads connections over workers that share publications", async () => {
    const { port, group } = await startGroup();
    expect(group.output()).toContain("with 2 workers");

    const clients = await Promise.all(
      Array.from({ length: 20 }, () => subscriber(port, "workers:1")),
    );
    const spread = await connectionsByWorker(port);
    expect(spread).toHaveLength(2);
    expect(spread[0]! + spread[1]!).toBe(20);
    expect(Math.min(...spread)).toBeGreaterThan(0);

    for (let i = 0; i < 5; i++) {
      await fetch(`http://127.0.0.1:${port}/api/publish`, {
        method: "POST",
        body: JSON.stringify({ channel: "workers:1", data: i }),
      });
    }
    await until(
      () => clients.every(({ received }) => received.length === 5),
      "every client has 5 messages",
    );
    for (const { received } of clients) {
      expect(received).toEqual([0, 1, 2, 3, 4]);
    }
    for (const { ws } of clients) ws.terminate();
  });

  it("starts a dead worker again and drains them all on SIGTERM", async () => {
    const { port, group } = await startGroup([
      "--drain-delay",
      "50ms",
      "--drain-window",
      "50ms",
    ]);
    const workers = () =>
      execFileSync("pgrep", ["-P", String(group.child.pid)])
        .toString()
        .trim()
        .split("\n")
        .map(Number);
    const [first] = workers();
    process.kill(first!, "SIGKILL");

    await until(async () => {
      const now = workers();
      if (now.length !== 2 || now.includes(first!)) return false;
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      return ready.status === 200;
    }, "the dead worker is replaced and the group is ready");

    group.child.kill("SIGTERM");
    expect((await group.done).code).toBe(0);
  });
});
