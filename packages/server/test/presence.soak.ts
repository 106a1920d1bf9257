/**
 * C24 at full length with the default presence timers (30 s TTL, 10 s
 * liveness refresh and reap): node A is killed with -9 while 20 users
 * are in `lobby` on it and 20 on node B. Presence through B, by
 * WebSocket and HTTP, must list only B's users within the documented
 * bound (presenceTtl plus the reap interval, 40 s), B's users get one
 * `leave` per A user, and restarting A never brings the ghosts back.
 */
import { afterAll, describe, expect, it } from "vitest";

import {
  anonUser,
  http,
  sleep,
  subscribedClient,
  waitUntil,
  type TestClient,
} from "./helpers.js";
import { killNodes, spawnNode, type NodeProcess } from "./node-process.js";
import { startRedis } from "./redis-server.js";

const API_KEY = "soak-test-key-0123456789";
const LOBBY = "lobby";
/** presenceTtl plus the reap interval, with the default timers. */
const REAPED_WITHIN_MS = 40_000;

afterAll(() => killNodes());

const sessions = (prefix: string) =>
  Array.from({ length: 20 }, (_, i) => `${prefix}${i}`);

/** The users presence lists through B: by WebSocket, by HTTP. */
async function listed(
  b: NodeProcess,
  asker: TestClient,
): Promise<{ ws: string[]; http: string[] }> {
  const viaWs = await asker.call<{ members: { user: string }[] }>("presence", {
    channel: LOBBY,
  });
  const viaHttp = await http(b.port, "GET", `/api/presence?channel=${LOBBY}`, {
    headers: { Authorization: `Bearer ${API_KEY}` },
  });
  const members = (viaHttp.json as { members: { user: string }[] }).members;
  return {
    ws: viaWs.members.map((m) => m.user).sort(),
    http: members.map((m) => m.user).sort(),
  };
}

describe("presence after a node crash, default timers (C24)", () => {
  it("lists no ghosts and announces each leave once", async () => {
    const redis = await startRedis();
    try {
      const options = { apiKey: API_KEY };
      let a = await spawnNode(redis.url, { ...options, nodeId: "a" });
      const b = await spawnNode(redis.url, { ...options, nodeId: "b" });
      const onB = await Promise.all(
        sessions("b").map((session) =>
          subscribedClient(b.port, LOBBY, { session, presence: true }),
        ),
      );
      await Promise.all(
        sessions("a").map((session) =>
          subscribedClient(a.port, LOBBY, { session, presence: true }),
        ),
      );
      const aUsers = sessions("a").map(anonUser).sort();
      const bUsers = sessions("b").map(anonUser).sort();
      const everyone = [...aUsers, ...bUsers].sort();
      const asker = onB[0]!.client;
      expect((await listed(b, asker)).ws).toEqual(everyone);
      const pushesBefore = onB.map(({ client }) => client.pushes.length);

      const killedAt = Date.now();
      a.kill();
      const seen: Record<string, { ws: number; http: number }> = {};
      let leavesMs: number | undefined;
      const leaves = (client: TestClient, before: number) =>
        client.pushes.slice(before).filter((f) => f.type === "leave");
      void waitUntil(
        () =>
          onB.every(
            ({ client }, i) => leaves(client, pushesBefore[i]!).length >= 20,
          ),
        REAPED_WITHIN_MS + 30_000,
      ).then(
        () => (leavesMs = Date.now() - killedAt),
        () => undefined,
      );
      for (const at of [0, 30, 90, 180]) {
        await sleep(killedAt + at * 1000 - Date.now());
        const now = await listed(b, asker);
        seen[`+${at}s`] = { ws: now.ws.length, http: now.http.length };
        if (at * 1000 > REAPED_WITHIN_MS) {
          expect(now.ws).toEqual(bUsers);
          expect(now.http).toEqual(bUsers);
        }
      }

      // A back with the same node id, then with a new one: its users are
      // gone, and neither incarnation brings them back.
      const restarts: Record<string, number> = {};
      for (const nodeId of ["a", "a-new"]) {
        a.kill();
        a = await spawnNode(redis.url, { ...options, nodeId, port: a.port });
        await sleep(15_000);
        const now = await listed(b, asker);
        expect(now.ws).toEqual(bUsers);
        expect(now.http).toEqual(bUsers);
        restarts[nodeId] = now.ws.length;
      }

      process.stdout.write(
        `C24: ${JSON.stringify({ listed: seen, leavesMs, restarts })}\n`,
      );
      expect(leavesMs).toBeLessThan(REAPED_WITHIN_MS + 5_000);
      for (const [i, { client }] of onB.entries()) {
        const after = client.pushes.slice(pushesBefore[i]);
        expect(after.filter((f) => f.type === "join")).toEqual([]);
        const left = after.filter((f) => f.type === "leave");
        expect(left.map((f) => f.user).sort()).toEqual(aUsers);
      }
    } finally {
      killNodes();
      await redis.stop();
    }
  });
});
