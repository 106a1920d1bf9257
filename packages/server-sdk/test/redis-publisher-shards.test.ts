/**
 * RedisPublisher on the fleet layouts beyond one Redis server: two named
 * standalone shards, and a Redis Cluster of three masters, each of the
 * test's own. A publish through it must reach subscribers on two
 * redis-engine nodes with the epoch and offsets a node's publish gets, on
 * channels that live on different shards or masters.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SwitchboardClient, type Message } from "@switchboard/client";
import {
  clusterGeneration,
  keySlot,
  parseShards,
  placeShard,
  redisIds,
} from "@switchboard/protocol";
import { createNode, type SwitchboardNode } from "@switchboard/server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import {
  startCluster,
  type OwnCluster,
} from "../../server/test/redis-cluster.js";
import {
  TestRedis,
  startRedis,
  startTogether,
  type OwnRedis,
} from "../../server/test/redis-server.js";
import { InvalidArgumentError } from "../src/index.js";
import { RedisPublisher } from "../src/redis.js";

/** Node options: canaries, and so cluster slot map reads, every 200 ms. */
const NODE_OPTIONS = {
  engine: "redis",
  canaryInterval: 200,
  unsubscribeLinger: 50,
} as const;

const nodes: SwitchboardNode[] = [];
const clients: SwitchboardClient[] = [];
const publishers: RedisPublisher[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(publishers.splice(0).map((p) => p.close()));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
});

const ports = new Map<SwitchboardNode, number>();

/** Two redis-engine nodes on `redisUrl`, once both are ready. */
async function startNodes(redisUrl: string): Promise<SwitchboardNode[]> {
  const started = await Promise.all(
    [0, 1].map(async () => {
      const node = createNode({ port: 0, ...NODE_OPTIONS, redisUrl });
      nodes.push(node);
      ports.set(node, (await node.listen()).port);
      return node;
    }),
  );
  await until(
    () => started.every((node) => node.engine.health().ready),
    "both nodes ready",
    15_000,
  );
  return started;
}

/** A client of `node` subscribed to `channel`, and what it receives. */
async function listen(
  node: SwitchboardNode,
  channel: string,
): Promise<Message[]> {
  const client = new SwitchboardClient({
    url: `ws://127.0.0.1:${ports.get(node)}/ws`,
  });
  clients.push(client);
  const messages: Message[] = [];
  const subscription = client.subscribe(channel);
  subscription.on("message", (message) => messages.push(message));
  await client.connect();
  await subscription.ready();
  return messages;
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Publishes on `channel` through node 0, the publisher, then node 1, and
 * checks that subscribers on both nodes got the three in order, with the
 * epoch and the offsets each publish resolved with.
 */
async function publishThroughAll(
  [first, second]: SwitchboardNode[],
  publisher: RedisPublisher,
  channel: string,
): Promise<string> {
  const heard = [await listen(first!, channel), await listen(second!, channel)];
  const viaFirst = await first!.publish(channel, "node 0");
  const direct = await publisher.publish(channel, { via: "redis" });
  const viaSecond = await second!.publish(channel, "node 1");
  expect(direct).toEqual({
    epoch: viaFirst.epoch,
    offset: viaFirst.offset + 1,
  });
  expect(viaSecond.epoch).toBe(viaFirst.epoch);
  expect(viaSecond.offset).toBe(viaFirst.offset + 2);
  for (const messages of heard) {
    await until(() => messages.length === 3, `three messages on ${channel}`);
    expect(messages.map((m) => [m.epoch, m.offset, m.data])).toEqual([
      [viaFirst.epoch, viaFirst.offset, "node 0"],
      [viaFirst.epoch, viaFirst.offset + 1, { via: "redis" }],
      [viaFirst.epoch, viaFirst.offset + 2, "node 1"],
    ]);
  }
  return direct.epoch;
}

describe("RedisPublisher on two named shards", () => {
  let a: OwnRedis;
  let b: OwnRedis;
  const url = () => `a=${a.url},b=${b.url}`;

  beforeAll(async () => {
    [a, b] = await startTogether([startRedis(), startRedis()]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  /** The first `room:<n>` channel placed on shard `name`. */
  function channelOn(name: string): string {
    const shards = parseShards(url());
    for (let n = 0; ; n++) {
      if (placeShard(shards, `room:${n}`).name === name) return `room:${n}`;
    }
  }

  async function holds(redis: OwnRedis, channel: string): Promise<boolean> {
    const admin = await TestRedis.connect(redis.url);
    try {
      return (await admin.command(["EXISTS", `sb:1:{${channel}}:m`])) === 1;
    } finally {
      await admin.close();
    }
  }

  it("publishes each channel on its shard, as nodes do", async () => {
    const fleet = await startNodes(url());
    const publisher = new RedisPublisher({ url: url() });
    publishers.push(publisher);
    const onA = channelOn("a");
    const onB = channelOn("b");

    const epochA = await publishThroughAll(fleet, publisher, onA);
    const epochB = await publishThroughAll(fleet, publisher, onB);

    expect([await holds(a, onA), await holds(b, onA)]).toEqual([true, false]);
    expect([await holds(a, onB), await holds(b, onB)]).toEqual([false, true]);
    // Each shard counts its own generation: "1." on a fresh server.
    expect(epochA).toMatch(/^1\./);
    expect(epochB).toMatch(/^1\./);
    expect(epochA).not.toBe(epochB);

    const keyed = await publisher.publish(onB, "once", { key: "k1" });
    expect(await publisher.publish(onB, "once", { key: "k1" })).toEqual({
      ...keyed,
      duplicate: true,
    });
    const broadcast = await publisher.broadcast([onA, onB], "all");
    expect(broadcast.map((r) => [r.channel, r.offset])).toEqual([
      [onA, 4],
      [onB, 5],
    ]);
  });

  it("refuses a shard set other than the fleet's", async () => {
    await startNodes(url());
    const alone = new RedisPublisher({ url: a.url });
    publishers.push(alone);
    const error = await alone.publish("refused:1", 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe(
      `url: the fleet's nodes place channels with shards ` +
        `a=127.0.0.1:${a.port}/0,b=127.0.0.1:${b.port}/0; ` +
        "this publisher has default",
    );
    expect(await holds(a, "refused:1")).toBe(false);
  });

  it("advances the generation of a server that restarted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sb-publisher-"));
    const own = await startRedis(dir);
    try {
      const [node] = await startNodes(own.url);
      const publisher = new RedisPublisher({ url: own.url });
      publishers.push(publisher);
      const before = await publisher.publish("room:g", "before");
      expect(before.epoch).toMatch(/^1\./);
      const admin = await TestRedis.connect(own.url);
      await admin.command(["SAVE"]);
      await admin.close();

      await own.restart();
      // The first to notice the new run id advances the generation: here
      // the publisher, before any node.
      const after = await publisher.publish("room:g", "after");
      expect(after).toEqual({
        epoch: `2.${before.epoch.slice(2)}`,
        offset: before.offset + 1,
      });
      // The node gets there on its own reconnect: its position reads
      // then carry the same epoch.
      const position = async () => {
        try {
          const read = await node!.engine.read("room:g", {
            since: undefined,
            limit: 0,
            reverse: false,
          });
          return read.epoch;
        } catch {
          return "redis away";
        }
      };
      await until(
        async () => (await position()) === after.epoch,
        "the node on the new generation",
      );
      expect(await node!.publish("room:g", "node")).toMatchObject({
        epoch: after.epoch,
        offset: after.offset + 1,
      });
    } finally {
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a URL it cannot use when built", () => {
    expect(
      () => new RedisPublisher({ url: "a=redis://h:1,redis://h:2" }),
    ).toThrow(
      new InvalidArgumentError(
        'url: with several shards each is name=URL, got "redis://h:2"',
      ),
    );
  });
});

describe("RedisPublisher on a Redis Cluster", () => {
  let cluster: OwnCluster;

  beforeAll(async () => {
    cluster = await startCluster(3, 0);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  /** A channel on each master, by the master's port. */
  async function channelPerMaster(): Promise<Map<number, string>> {
    const masters = (await cluster.masters()).map((m) => m.port);
    const found = new Map<number, string>();
    for (let n = 0; found.size < masters.length; n++) {
      const channel = `cl:${n}`;
      const owner = await cluster.ownerOf(keySlot(`sb:1:{${channel}}`));
      if (!found.has(owner)) found.set(owner, channel);
    }
    return found;
  }

  /** The generation a node gives epochs of the master on `port`. */
  async function generationOf(port: number): Promise<string> {
    const node = await cluster.node(port);
    const server = String(await node.command(["INFO", "server"]));
    const replication = String(await node.command(["INFO", "replication"]));
    return clusterGeneration(redisIds(server, replication));
  }

  it("publishes on each channel's master with its generation", async () => {
    const fleet = await startNodes(cluster.url);
    const publisher = new RedisPublisher({ url: cluster.url });
    publishers.push(publisher);
    const channels = await channelPerMaster();
    expect(channels.size).toBe(3);
    const epochs = new Set<string>();
    for (const [port, channel] of channels) {
      const epoch = await publishThroughAll(fleet, publisher, channel);
      expect(epoch.slice(0, epoch.indexOf("."))).toBe(await generationOf(port));
      epochs.add(epoch.slice(0, epoch.indexOf(".")));
    }
    expect(epochs.size).toBe(3);
  });

  it("follows a slot that moved to another master", async () => {
    const fleet = await startNodes(cluster.url);
    const publisher = new RedisPublisher({ url: cluster.url });
    publishers.push(publisher);
    const channels = [...(await channelPerMaster()).entries()];
    const [from, channel] = channels[0]!;
    const [to] = channels[1]!;
    const heard = await listen(fleet[1]!, channel);
    const before = await publisher.publish(channel, "before", { key: "b" });

    await cluster.moveSlot(keySlot(`sb:1:{${channel}}`), to);
    // The publisher's slot map still names the old master: it meets
    // MOVED and sends the publish again where the slot is now.
    const after = await publisher.publish(channel, "after", { key: "a" });
    const again = await publisher.publish(channel, "after", { key: "a" });

    expect(after.offset).toBe(before.offset + 1);
    expect(again).toEqual({ ...after, duplicate: true });
    const generation = await generationOf(to);
    expect(after.epoch).toBe(`${generation}.${before.epoch.split(".")[1]}`);
    expect(before.epoch.startsWith(await generationOf(from))).toBe(true);
    // Node 1 follows the move: it listens on the new master, and its
    // subscriber starts over there, with the new master's epoch.
    const master = await cluster.node(to);
    await until(async () => {
      const reply = (await master.command([
        "PUBSUB",
        "SHARDNUMSUB",
        `sb:1:{${channel}}`,
      ])) as [string, number];
      return reply[1] > 0;
    }, "node 1 listening on the new master");
    const viaNode = await fleet[1]!.publish(channel, "node");
    expect(viaNode).toMatchObject({
      epoch: after.epoch,
      offset: after.offset + 1,
    });
    await until(
      () => heard.some((m) => m.offset === viaNode.offset),
      "the node's publish after the move",
    );
    expect(heard.at(-1)).toMatchObject({ epoch: after.epoch, data: "node" });
  });
});
