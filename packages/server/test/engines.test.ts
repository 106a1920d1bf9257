/**
 * One conformance suite for both engines: what a client sees must not
 * depend on the engine. With redis, two nodes share one Redis and the
 * clients of a test are spread over both.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { NodeOptions } from "../src/index.js";
import {
  TestClient,
  anonUser,
  http,
  isMessage,
  rawUpgrade,
  sleep,
  startNode,
  stopAll,
  subscribedClient,
  waitUntil,
  type StartedNode,
} from "./helpers.js";
import { killNodes, spawnNode } from "./node-process.js";
import { startCluster, type OwnCluster } from "./redis-cluster.js";
import {
  TestRedis,
  startRedis,
  startTogether,
  type OwnRedis,
} from "./redis-server.js";
import { startProxy } from "./tcp-proxy.js";

interface Fleet {
  /** Ports of the fleet's nodes; memory has one, redis two. */
  readonly ports: readonly number[];
  readonly nodes: readonly StartedNode[];
}

const ENGINES: readonly [string, () => NodeOptions, number][] = [
  ["memory", () => ({ engine: "memory" }), 1],
  [
    "redis",
    () => ({
      engine: "redis",
      redisUrl: redis.url,
      unsubscribeLinger: 50,
    }),
    2,
  ],
  [
    "redis on two shards",
    () => ({
      engine: "redis",
      redisUrl: `a=${shardA.url},b=${shardB.url}`,
      unsubscribeLinger: 50,
    }),
    2,
  ],
  [
    "redis on a Redis Cluster",
    () => ({
      engine: "redis",
      redisUrl: cluster.url,
      unsubscribeLinger: 50,
    }),
    2,
  ],
];

let redis: OwnRedis;
/**
 * The shards of the sharded fleet: Redis servers of their own, since a
 * server is used by one shard set at a time.
 */
let shardA: OwnRedis;
let shardB: OwnRedis;
/** Three masters, no replicas: the cluster of the conformance suite. */
let cluster: OwnCluster;

beforeAll(async () => {
  [redis, shardA, shardB, cluster] = await startTogether([
    startRedis(),
    startRedis(),
    startRedis(),
    startCluster(3, 0),
  ]);
}, 60_000);

afterAll(async () => {
  killNodes();
  await stopAll();
  await Promise.all([
    redis.stop(),
    shardA.stop(),
    shardB.stop(),
    cluster.stop(),
  ]);
});

let unique = 0;
/** A channel no other test uses. */
function channel(name: string): string {
  unique += 1;
  return `conf:${name}-${unique}`;
}

describe.each(ENGINES)("the %s engine", (_name, options, size) => {
  let fleet: Fleet;

  beforeAll(async () => {
    const nodes: StartedNode[] = [];
    for (let i = 0; i < size; i++) {
      nodes.push(await startNode({ ...options(), nodeId: `n${i}` }));
    }
    fleet = { nodes, ports: nodes.map((n) => n.port) };
  });

  /** The port of node `i`, wrapping around a smaller fleet. */
  const port = (i: number) => fleet.ports[i % fleet.ports.length]!;
  const node = (i: number) => fleet.nodes[i % fleet.nodes.length]!.node;

  it("gives every subscriber on every node one order", async () => {
    const name = channel("order");
    const clients = await Promise.all(
      Array.from({ length: 6 }, (_, i) => TestClient.connect(port(i))),
    );
    await Promise.all(clients.map((client) => client.subscribe(name)));
    const publishers = await Promise.all([
      TestClient.connect(port(0)),
      TestClient.connect(port(1)),
    ]);
    await Promise.all(
      publishers.map(async (publisher, p) => {
        for (let i = 0; i < 25; i++) {
          await publisher.call("publish", {
            channel: name,
            data: { p, i },
          });
        }
      }),
    );
    for (let i = 0; i < 10; i++) await node(i).publish(name, { server: i });

    for (const client of clients) {
      await client.waitForCount(isMessage(name), 60);
    }
    const first = clients[0]!.messages(name);
    expect(first.map((m) => m.offset)).toEqual(
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
    for (const client of clients) {
      expect(client.messages(name)).toEqual(first);
    }
  });

  it("delivers a publish sent right behind its subscribe", async () => {
    const client = await TestClient.connect(port(0));
    for (let i = 0; i < 20; i++) {
      const name = channel("own");
      client.send({ type: "subscribe", id: 1000 + 2 * i, channel: name });
      client.send({
        type: "publish",
        id: 1001 + 2 * i,
        channel: name,
        data: i,
      });
      const subscribed = await client.reply(1000 + 2 * i);
      expect(subscribed.result).toMatchObject({ offset: 0 });
      const message = await client.waitForMessage(name, i);
      expect(message.offset).toBe(1);
    }
  });

  it("reports one epoch for an empty channel on every node", async () => {
    const name = channel("empty");
    const [a, b] = await Promise.all([
      TestClient.connect(port(0)),
      TestClient.connect(port(1)),
    ]);
    const fromA = await a.subscribe(name);
    const fromB = await b.subscribe(name);
    expect(fromA.offset).toBe(0);
    expect(fromB).toEqual(fromA);
  });

  it("recovers on one node what was missed on another", async () => {
    const name = channel("recover");
    const first = await subscribedClient(port(0), name);
    for (let i = 0; i < 5; i++) await node(0).publish(name, i);
    await first.client.waitForCount(isMessage(name), 5);
    const last = first.client.messages(name).at(-1)!;
    first.client.terminate();

    for (let i = 5; i < 12; i++) await node(1).publish(name, i);
    const back = await TestClient.connect(port(1));
    const result = await back.subscribe(name, {
      since: { epoch: last.epoch, offset: last.offset },
    });
    expect(result.recovered).toBe(true);
    expect(result.publications?.map((p) => p.data)).toEqual([
      5, 6, 7, 8, 9, 10, 11,
    ]);
    expect(result.offset).toBe(12);
  });

  it("answers a retried key with the first result", async () => {
    const name = channel("key");
    const [a, b] = await Promise.all([
      TestClient.connect(port(0)),
      TestClient.connect(port(1)),
    ]);
    const first = await a.call("publish", {
      channel: name,
      data: 1,
      key: "once",
    });
    const again = await b.call("publish", {
      channel: name,
      data: 1,
      key: "once",
    });
    expect(again).toEqual({ ...first, duplicate: true });
    const history = await b.call<{ publications: unknown[] }>("history", {
      channel: name,
      limit: 10,
    });
    expect(history.publications).toHaveLength(1);
  });

  it("lists presence across nodes and announces it once", async () => {
    const name = channel("presence");
    const watcher = await subscribedClient(port(0), name, {
      presence: true,
      session: "watcher",
    });
    const guest = await subscribedClient(port(1), name, { session: "guest" });
    await watcher.client.waitFor((f) => f.type === "join");
    const { members } = await watcher.client.call<{
      members: { user: string }[];
    }>("presence", { channel: name });
    expect(members.map((m) => m.user).sort()).toEqual(
      [anonUser("guest"), anonUser("watcher")].sort(),
    );

    await guest.client.close();
    const leave = await watcher.client.waitFor((f) => f.type === "leave");
    expect(leave).toMatchObject({ user: anonUser("guest"), client: guest.id });
    expect(
      watcher.client.pushes.filter((f) => f.type !== "message"),
    ).toHaveLength(2);
  });

  it("pages history newest first with reverse", async () => {
    const name = channel("history");
    for (let i = 1; i <= 10; i++) await node(i).publish(name, i);
    const client = await TestClient.connect(port(0));
    const page = await client.call<{
      offset: number;
      publications: { data: number }[];
    }>("history", { channel: name, limit: 3, reverse: true });
    expect(page.offset).toBe(10);
    expect(page.publications.map((p) => p.data)).toEqual([10, 9, 8]);
  });
});

describe("the redis engine", () => {
  it("repairs what pub/sub lost while its link was cut", async () => {
    const proxy = await startProxy(redis.port);
    const a = await startNode({
      engine: "redis",
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
    });
    const b = await startNode({ engine: "redis", redisUrl: redis.url });
    const name = channel("repair");
    const { client } = await subscribedClient(a.port, name);
    try {
      // One message on an otherwise quiet channel while A is cut off:
      // no later message will reveal the gap, only A's own repair.
      proxy.cut();
      await b.node.publish(name, "while cut");
      await sleep(200);
      proxy.restore();

      const message = await client.waitForMessage(name, "while cut");
      expect(message.offset).toBe(1);
      await b.node.publish(name, "after");
      await client.waitForCount(isMessage(name), 2);
      expect(client.messages(name).map((m) => m.offset)).toEqual([1, 2]);
    } finally {
      await a.stop();
      await proxy.close();
    }
  });

  it("notices a black-holed link, reconnects and repairs (C02)", async () => {
    const proxy = await startProxy(redis.port);
    const timers = { redisPingInterval: 100, redisTimeout: 200 };
    const a = await startNode({
      engine: "redis",
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
      canaryInterval: 100,
      ...timers,
    });
    const b = await startNode({ engine: "redis", redisUrl: redis.url });
    const name = channel("black-hole");
    const { client } = await subscribedClient(a.port, name);
    try {
      // No FIN, no RST: only unanswered PINGs tell. The command
      // connection is checked first, and the reason names it.
      proxy.stall();
      const stalledAt = Date.now();
      await b.node.publish(name, "during");
      await waitUntil(
        async () => (await http(a.port, "GET", "/readyz")).status === 503,
      );
      const noticedMs = Date.now() - stalledAt;
      const readyz = await http(a.port, "GET", "/readyz");
      expect(readyz.json).toMatchObject({
        status: "not_ready",
        shard: "default",
        reason: "redis commands connection unresponsive",
      });
      // PING interval plus timeout, with room for a loaded machine.
      expect(noticedMs).toBeLessThan(3 * (100 + 200) + 500);
      await sleep(500);

      proxy.restore();
      await waitUntil(
        async () => (await http(a.port, "GET", "/readyz")).status === 200,
      );
      for (let i = 1; i <= 5; i++) await b.node.publish(name, i);
      await client.waitForCount(isMessage(name), 6);
      expect(client.messages(name).map((m) => m.data)).toEqual([
        "during",
        1,
        2,
        3,
        4,
        5,
      ]);
      expect(client.messages(name).map((m) => m.offset)).toEqual([
        1, 2, 3, 4, 5, 6,
      ]);
    } finally {
      await a.stop();
      await proxy.close();
    }
  });

  it("disconnects and unsubscribes a user on every node", async () => {
    const [a, b] = await Promise.all([
      startNode({ engine: "redis", redisUrl: redis.url }),
      startNode({ engine: "redis", redisUrl: redis.url }),
    ]);
    const name = channel("control");
    const onB = await subscribedClient(b.port, name, { session: "far" });
    const other = await subscribedClient(b.port, name, { session: "other" });
    const onA = await subscribedClient(a.port, name, { session: "near" });

    const ended = await http(a.port, "POST", "/api/unsubscribe", {
      body: { user: anonUser("far"), channel: name },
    });
    expect(ended).toMatchObject({ status: 200, json: { unsubscribed: 0 } });
    expect(await onB.client.waitFor((f) => f.type === "unsubscribed")).toEqual({
      type: "unsubscribed",
      channel: name,
      code: "server",
      reason: "unsubscribed by the server",
      resubscribe: false,
    });

    const closed = await http(a.port, "POST", "/api/disconnect", {
      body: { user: anonUser("far"), reconnect: true },
    });
    expect(closed).toMatchObject({ status: 200, json: { disconnected: 0 } });
    expect((await onB.client.closed).code).toBe(4009);
    // Nobody else is touched, on either node.
    await a.node.publish(name, "still here");
    await other.client.waitForMessage(name, "still here");
    await onA.client.waitForMessage(name, "still here");
    expect(other.client.pushes.map((f) => f.type)).toEqual(["message"]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("moves its clients away when deaf while peers hear", async () => {
    const proxy = await startProxy(redis.port);
    const a = await startNode({
      engine: "redis",
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
      canaryInterval: 100,
      redisPingInterval: 100,
      redisTimeout: 200,
      deafDrainAfter: 600,
      drainWindow: 200,
    });
    const b = await startNode({ engine: "redis", redisUrl: redis.url });
    const name = channel("deaf");
    const { client } = await subscribedClient(a.port, name);
    const idle = await TestClient.connect(a.port);
    const elsewhere = await subscribedClient(b.port, name);
    try {
      // Commands still work, so the node can see its peer is alive.
      proxy.stall("subscribers");
      const stalledAt = Date.now();
      const notice = await client.waitFor((f) => f.type === "reconnect");
      expect(notice).toMatchObject({ type: "reconnect", reason: "node deaf" });
      expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(600);
      expect((await client.closed).code).toBe(1001);
      expect(idle.closedWith).toBeUndefined();
      // The node keeps replacing its stalled subscriber connection, and a
      // fresh one looks ready until its first PING goes unanswered: the
      // reason shows within a few probes rather than at any one instant.
      let reason: unknown;
      await waitUntil(async () => {
        const readyz = await http(a.port, "GET", "/readyz");
        reason = (readyz.json as { reason?: unknown }).reason;
        return reason === "redis subscriber connection unresponsive";
      }, 3_000);
      expect(reason).toBe("redis subscriber connection unresponsive");
      await b.node.publish(name, "heard elsewhere");
      await elsewhere.client.waitForMessage(name, "heard elsewhere");
    } finally {
      proxy.restore();
      await a.stop();
      await proxy.close();
    }
  });

  it("reaps a killed node's presence with one leave per user", async () => {
    const timers = {
      presenceTtl: 1_000,
      livenessInterval: 200,
      reapInterval: 200,
    };
    const doomed = await spawnNode(redis.url, timers);
    const survivors = [
      await startNode({ engine: "redis", redisUrl: redis.url, ...timers }),
      await startNode({ engine: "redis", redisUrl: redis.url, ...timers }),
    ];
    const name = channel("reap");
    const watcher = await subscribedClient(survivors[0]!.port, name, {
      presence: true,
      session: "watcher",
    });
    const local = await subscribedClient(survivors[1]!.port, name, {
      session: "local",
    });
    const gone = await Promise.all(
      ["g1", "g2", "g3"].map((session) =>
        subscribedClient(doomed.port, name, { session }),
      ),
    );
    const moving = await subscribedClient(doomed.port, name, {
      session: "moving",
    });
    await watcher.client.waitForCount((f) => f.type === "join", 5);

    doomed.kill();
    // One client comes back through another node before the reap.
    await subscribedClient(survivors[1]!.port, name, { session: "moving" });
    const leaves = await watcher.client.waitForCount(
      (f) => f.type === "leave",
      3,
      5_000,
    );
    expect(leaves.map((f) => f.user).sort()).toEqual(
      ["g1", "g2", "g3"].map(anonUser).sort(),
    );
    expect(leaves.map((f) => f.client).sort()).toEqual(
      gone.map((g) => g.id).sort(),
    );

    // Both survivors reap; a later pass finds nothing left to announce.
    await sleep(3 * timers.reapInterval);
    expect(watcher.client.pushes.map((f) => f.type)).toEqual([
      "join",
      "join",
      "join",
      "join",
      "join",
      "leave",
      "leave",
      "leave",
    ]);
    const { members } = await watcher.client.call<{
      members: { user: string }[];
    }>("presence", { channel: name });
    expect(members.map((m) => m.user).sort()).toEqual(
      ["watcher", "local", "moving"].map(anonUser).sort(),
    );
    expect(moving.id).not.toBe(local.id);
  });

  it("is not ready while Redis is away, and recovers after", async () => {
    const proxy = await startProxy(redis.port);
    const a = await startNode({
      engine: "redis",
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
      canaryInterval: 100,
    });
    const b = await startNode({ engine: "redis", redisUrl: redis.url });
    const name = channel("outage");
    const { client } = await subscribedClient(a.port, name);
    try {
      expect((await http(a.port, "GET", "/readyz")).status).toBe(200);
      proxy.cut();
      await waitUntil(
        async () => (await http(a.port, "GET", "/readyz")).status === 503,
      );
      const readyz = await http(a.port, "GET", "/readyz");
      expect(readyz.json).toMatchObject({
        status: "not_ready",
        reason: "redis unreachable",
      });
      expect((await rawUpgrade(a.port)).status).toBe(503);
      // Local connections stay; what needs Redis is unavailable.
      expect(
        await client.request("publish", { channel: name, data: 0 }),
      ).toMatchObject({ type: "error", code: "unavailable", temporary: true });
      await b.node.publish(name, "during");

      proxy.restore();
      await waitUntil(
        async () => (await http(a.port, "GET", "/readyz")).status === 200,
      );
      await client.waitForMessage(name, "during");
      expect(client.messages(name).map((m) => m.offset)).toEqual([1]);
    } finally {
      await a.stop();
      await proxy.close();
    }
  });

  it("resubscribes after Redis kills its subscriber connection", async () => {
    const a = await startNode({ engine: "redis", redisUrl: redis.url });
    const name = channel("killed");
    const { client } = await subscribedClient(a.port, name);
    const admin = await TestRedis.connect(redis.url);
    try {
      await admin.command(["CLIENT", "KILL", "TYPE", "pubsub"]);
      await waitUntil(async () => {
        const [, count] = (await admin.command([
          "PUBSUB",
          "NUMSUB",
          `sb:1:{${name}}`,
        ])) as [string, number];
        return count === 1;
      });
      await a.node.publish(name, "after the kill");
      await client.waitForMessage(name, "after the kill");
    } finally {
      await admin.close();
    }
  });

  it("stops lingering removals when the node closes", async () => {
    // A Redis of its own: no other node may reap the entry meanwhile.
    const own = await startRedis();
    const a = await startNode({
      engine: "redis",
      redisUrl: own.url,
      presenceTtl: 300,
      livenessInterval: 100,
    });
    const name = channel("linger");
    const { client } = await subscribedClient(a.port, name, {
      session: "lingering",
    });
    client.terminate();
    await waitUntil(() => a.node.connectionCount === 0);
    await a.stop();
    // A removal that fired now would fail on the closed connection; an
    // unhandled rejection would fail this test run.
    await sleep(500);
    const admin = await TestRedis.connect(own.url);
    try {
      const members = (await admin.command([
        "HLEN",
        `sb:1:{${name}}:p`,
      ])) as number;
      expect(members).toBe(1);
    } finally {
      await admin.close();
      await own.stop();
    }
  });

  it.each([
    ["restarted empty", false],
    ["restarted with its data", true],
  ])(
    "tells subscribers they cannot recover when Redis is %s",
    async (_how, persisted) => {
      const dir = persisted ? mkdtempSync(join(tmpdir(), "sb-redis-")) : "";
      const own = await startRedis(dir || undefined);
      const a = await startNode({
        engine: "redis",
        redisUrl: own.url,
        canaryInterval: 100,
      });
      const name = channel("restart");
      const { client, sub } = await subscribedClient(a.port, name);
      try {
        for (let i = 1; i <= 3; i++) await a.node.publish(name, i);
        await client.waitForCount(isMessage(name), 3);
        if (persisted) {
          const admin = await TestRedis.connect(own.url);
          await admin.command(["SAVE"]);
          await admin.close();
        }

        await own.restart();
        const ended = await client.waitFor(
          (f) => f.type === "unsubscribed",
          10_000,
        );
        expect(ended).toEqual({
          type: "unsubscribed",
          channel: name,
          code: "insufficient_state",
          reason: "messages were lost; resubscribe to recover",
          resubscribe: true,
        });
        await waitUntil(
          async () => (await http(a.port, "GET", "/readyz")).status === 200,
          10_000,
        );
        const again = await client.subscribe(name, {
          since: { epoch: sub.epoch, offset: 3 },
        });
        expect(again.recovered).toBe(false);
        expect(again.epoch).not.toBe(sub.epoch);
        expect(again.offset).toBe(persisted ? 3 : 0);
        const next = await a.node.publish(name, "next");
        expect(next.epoch).toBe(again.epoch);
        await client.waitForMessage(name, "next");
      } finally {
        await a.stop();
        await own.stop();
      }
    },
  );

  it("finds a message pub/sub never carried, by position checks", async () => {
    const a = await startNode({
      engine: "redis",
      redisUrl: redis.url,
      positionCheckInterval: 200,
    });
    const name = channel("silent");
    const { client } = await subscribedClient(a.port, name);
    await a.node.publish(name, "heard");
    await client.waitForMessage(name, "heard");

    // Stored as a publish would, but never published on the topic.
    const admin = await TestRedis.connect(redis.url);
    try {
      await admin.command(["HINCRBY", `sb:1:{${name}}:m`, "t", "1"]);
      await admin.command([
        "XADD",
        `sb:1:{${name}}:s`,
        "2-0",
        "d",
        '"silent"',
        "p",
        "",
      ]);
    } finally {
      await admin.close();
    }
    const silent = await client.waitForMessage(name, "silent", 3_000);
    expect(silent.offset).toBe(2);
  });

  it("is not ready on a Redis that may evict keys", async () => {
    const own = await startRedis(undefined, [
      "--maxmemory-policy",
      "allkeys-lru",
    ]);
    const a = await startNode({ engine: "redis", redisUrl: own.url });
    try {
      const readyz = await http(a.port, "GET", "/readyz");
      expect(readyz.status).toBe(503);
      expect(readyz.json).toMatchObject({
        status: "not_ready",
        reason: "redis maxmemory-policy is allkeys-lru, needs noeviction",
      });
      expect((await rawUpgrade(a.port)).status).toBe(503);
    } finally {
      await a.stop();
      await own.stop();
    }
  });
});
