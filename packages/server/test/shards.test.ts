/**
 * The redis engine on named shards: two standalone Redis servers of the
 * test's own. Channels are placed by rendezvous hashing, and nodes that
 * disagree on the shard set are not ready.
 */
import { fingerprint, parseShards, placeShard } from "@switchboard/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  TestClient,
  http,
  isMessage,
  stopAll,
  type StartedNode,
  startNode,
} from "./helpers.js";
import { TestRedis, startRedis, type OwnRedis } from "./redis-server.js";

let a: OwnRedis;
let b: OwnRedis;
let other: OwnRedis;

beforeAll(async () => {
  [a, b, other] = await Promise.all([startRedis(), startRedis(), startRedis()]);
});

afterAll(async () => {
  await stopAll();
  await Promise.all([a.stop(), b.stop(), other.stop()]);
});

/** NUMSUB of a channel's topic on one Redis. */
async function listeners(redis: OwnRedis, channel: string): Promise<number> {
  const admin = await TestRedis.connect(redis.url);
  try {
    const [, count] = (await admin.command([
      "PUBSUB",
      "NUMSUB",
      `sb:1:{${channel}}`,
    ])) as [string, number];
    return count;
  } finally {
    await admin.close();
  }
}

async function hasMeta(redis: OwnRedis, channel: string): Promise<boolean> {
  const admin = await TestRedis.connect(redis.url);
  try {
    return (await admin.command(["EXISTS", `sb:1:{${channel}}:m`])) === 1;
  } finally {
    await admin.close();
  }
}

describe("the redis engine on two shards", () => {
  let nodes: StartedNode[];
  const shards = () => `a=${a.url},b=${b.url}`;

  beforeAll(async () => {
    nodes = await Promise.all(
      ["n0", "n1"].map((nodeId) =>
        startNode({ engine: "redis", redisUrl: shards(), nodeId }),
      ),
    );
  });

  it("spreads channels over both, each on its rendezvous shard", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `spread:${i}`);
    const client = await TestClient.connect(nodes[0]!.port);
    await Promise.all(names.map((name) => client.subscribe(name)));
    for (const [i, name] of names.entries()) {
      await nodes[i % 2]!.node.publish(name, i);
    }
    await client.waitForCount(isMessage(), names.length);

    const servers = { a, b };
    const placed = names.map(
      (name) => placeShard([{ name: "a" }, { name: "b" }], name).name,
    );
    expect(new Set(placed)).toEqual(new Set(["a", "b"]));
    for (const [i, name] of names.entries()) {
      const home = servers[placed[i] as "a" | "b"];
      const away = home === a ? b : a;
      expect(await listeners(home, name)).toBe(1);
      expect(await listeners(away, name)).toBe(0);
      expect(await hasMeta(home, name)).toBe(true);
      expect(await hasMeta(away, name)).toBe(false);
      expect(client.messages(name).map((m) => m.data)).toEqual([i]);
    }
  });

  it("lists channels of both shards", async () => {
    const answer = await http(nodes[1]!.port, "GET", "/api/channels");
    const listed = (
      answer.json as { channels: { channel: string }[] }
    ).channels.map((c) => c.channel);
    expect(listed).toEqual(
      expect.arrayContaining(["spread:0", "spread:1", "spread:11"]),
    );
  });

  it.each([
    ["one plain URL of shard a", () => a.url, "default"],
    ["shard b on another server", () => `a=${a.url},b=${other.url}`, "a"],
    ["the names swapped", () => `a=${b.url},b=${a.url}`, "a"],
    ["a third shard", () => `${shards()},c=${other.url}`, "a"],
  ])(
    "keeps a node with %s not ready, and says why",
    async (_how, url, shard) => {
      const odd = await startNode({ engine: "redis", redisUrl: url() });
      try {
        const readyz = await http(odd.port, "GET", "/readyz");
        expect(readyz.status).toBe(503);
        const body = readyz.json as Record<string, unknown>;
        expect(body.shard).toBe(shard);
        expect(body.reason).toBe(
          `shard ${shard} is in use by nodes with shards ` +
            `a=127.0.0.1:${a.port}/0,b=127.0.0.1:${b.port}/0; ` +
            `this node has ${fingerprint(parseShards(url()))}`,
        );
        for (const node of nodes) {
          expect((await http(node.port, "GET", "/readyz")).status).toBe(200);
        }
      } finally {
        await odd.stop();
      }
    },
  );
});
