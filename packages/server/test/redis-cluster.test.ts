/**
 * The redis engine on a Redis Cluster of the test's own: three masters,
 * each with a replica, started once for the file. Channels live on the
 * master of their slot and are heard through SSUBSCRIBE there; a slot
 * moved or a master failed over while publishing goes on costs no
 * message silently.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  TestClient,
  isMessage,
  sleep,
  stopAll,
  waitUntil,
  type ServerFrame,
  type StartedNode,
  startNode,
  type SubscribeResult,
} from "./helpers.js";
import { startCluster, type OwnCluster } from "./redis-cluster.js";

let cluster: OwnCluster;
let nodes: StartedNode[];

/** Node options of the file: canaries, and so slot map reads, every 200 ms. */
const OPTIONS = {
  engine: "redis",
  canaryInterval: 200,
  livenessInterval: 300,
  reapInterval: 500,
  presenceTtl: 1_000,
  unsubscribeLinger: 50,
} as const;

let starting: Promise<OwnCluster> | undefined;

beforeAll(async () => {
  starting = startCluster(3, 1);
  cluster = await starting;
  nodes = await Promise.all(
    ["n0", "n1"].map((nodeId) =>
      startNode({ ...OPTIONS, redisUrl: cluster.url, nodeId }),
    ),
  );
  await waitUntil(
    () => nodes.every((node) => node.node.engine.health().ready),
    10_000,
    "both nodes ready on the cluster",
  );
}, 60_000);

afterAll(async () => {
  await stopAll();
  // A start that outlived beforeAll's timeout still ends here.
  await (await starting?.catch(() => undefined))?.stop();
});

let unique = 0;
function names(name: string, count: number): string[] {
  unique += 1;
  return Array.from({ length: count }, (_, i) => `cl:${name}-${unique}-${i}`);
}

/** SHARDNUMSUB of a channel's topic on the node at `port`. */
async function shardListeners(port: number, channel: string): Promise<number> {
  const reply = (await (
    await cluster.node(port)
  ).command(["PUBSUB", "SHARDNUMSUB", `sb:1:{${channel}}`])) as [
    string,
    number,
  ];
  return reply[1];
}

/**
 * Publishes `{i}` on each channel in turn through both nodes until
 * halted, each with an idempotency key it keeps across retries.
 */
function publishing(channels: readonly string[]): {
  readonly sent: Map<string, { offset: number; i: number; epoch: string }[]>;
  halt(): Promise<void>;
} {
  const sent = new Map(
    channels.map((c) => [
      c,
      [] as { offset: number; i: number; epoch: string }[],
    ]),
  );
  let halted = false;
  const done = (async () => {
    for (let i = 0; !halted; i++) {
      const channel = channels[i % channels.length]!;
      const key = `k-${unique}-${i}`;
      for (let attempt = 0; ; attempt++) {
        try {
          const outcome = await nodes[i % 2]!.node.publish(
            channel,
            { i },
            { key },
          );
          sent
            .get(channel)!
            .push({ offset: outcome.offset, i, epoch: outcome.epoch });
          break;
        } catch (error) {
          if (attempt > 200) throw error;
          await sleep(25);
        }
      }
      await sleep(5);
    }
  })();
  return {
    sent,
    halt: async () => {
      halted = true;
      await done;
    },
  };
}

describe("the redis engine on a Redis Cluster", () => {
  it("places channels on the masters of their slots", async () => {
    const channels = names("spread", 12);
    const client = await TestClient.connect(nodes[0]!.port);
    await Promise.all(channels.map((name) => client.subscribe(name)));
    for (const [i, name] of channels.entries()) {
      await nodes[i % 2]!.node.publish(name, i);
    }
    await client.waitForCount(isMessage(), channels.length);

    const masters = (await cluster.masters()).map((m) => m.port);
    const homes = new Set<number>();
    for (const [i, name] of channels.entries()) {
      const slot = await cluster.keySlot(`sb:1:{${name}}`);
      expect(await cluster.keySlot(`sb:1:{${name}}:m`)).toBe(slot);
      const home = await cluster.ownerOf(slot);
      homes.add(home);
      for (const port of masters) {
        expect(await shardListeners(port, name)).toBe(port === home ? 1 : 0);
      }
      const meta = await cluster.node(home);
      expect(await meta.command(["EXISTS", `sb:1:{${name}}:m`])).toBe(1);
      expect(client.messages(name).map((m) => m.data)).toEqual([i]);
    }
    expect(homes.size).toBe(3);
    await client.close();
  });

  it("refuses named shards that are cluster nodes", async () => {
    const [first, second] = cluster.ports;
    const url = `a=redis://127.0.0.1:${first},b=redis://127.0.0.1:${second}`;
    await expect(startNode({ ...OPTIONS, redisUrl: url })).rejects.toThrow(
      "redisUrl: shard a is a Redis Cluster node; give a cluster as one " +
        "URL, without shard names",
    );
  });

  it("keeps every channel flowing while a live slot moves", async () => {
    const channels = names("move", 4);
    const [moved, ...others] = channels as [string, ...string[]];
    const clients = await Promise.all(
      nodes.map((node) => TestClient.connect(node.port)),
    );
    for (const client of clients) {
      for (const name of channels) await client.subscribe(name);
    }
    const slot = await cluster.keySlot(`sb:1:{${moved}}`);
    const from = await cluster.ownerOf(slot);
    const to = (await cluster.masters()).find((m) => m.port !== from)!.port;

    const load = publishing(channels);
    await sleep(300);
    const started = Date.now();
    await cluster.moveSlot(slot, to);
    expect(await cluster.ownerOf(slot)).toBe(to);
    const resumed = await resume(clients, moved, load, started);
    await sleep(300);
    await load.halt();

    await waitUntil(
      async () => (await shardListeners(to, moved)) === 2,
      5_000,
      "both nodes listening on the new master",
    );
    expect(await shardListeners(from, moved)).toBe(0);
    await expectDelivered(clients, others, moved, load, resumed);
    await Promise.all(clients.map((client) => client.close()));
  }, 30_000);

  it("keeps every channel flowing through a replica failover", async () => {
    const candidates = names("failover", 12);
    const moved = candidates[0]!;
    const slot = await cluster.keySlot(`sb:1:{${moved}}`);
    const from = await cluster.ownerOf(slot);
    const master = (await cluster.masters()).find((m) => m.port === from)!;
    // The other channels live on the other masters: they keep flowing.
    const others: string[] = [];
    for (const name of candidates.slice(1)) {
      const owner = await cluster.ownerOf(
        await cluster.keySlot(`sb:1:{${name}}`),
      );
      if (owner !== from && others.length < 3) others.push(name);
    }
    const channels = [moved, ...others];
    const clients = await Promise.all(
      nodes.map((node) => TestClient.connect(node.port)),
    );
    for (const client of clients) {
      for (const name of channels) await client.subscribe(name);
    }

    const load = publishing(channels);
    await sleep(300);
    const started = Date.now();
    await (
      await cluster.node(master.replica!)
    ).command(["CLUSTER", "FAILOVER"]);
    await waitUntil(
      async () => (await cluster.ownerOf(slot)) === master.replica,
      10_000,
      "the replica promoted",
    );
    const resumed = await resume(clients, moved, load, started);
    await sleep(300);
    await load.halt();

    await waitUntil(
      async () => (await shardListeners(master.replica!, moved)) === 2,
      5_000,
      "both nodes listening on the promoted replica",
    );
    await expectDelivered(clients, others, moved, load, resumed);
    await Promise.all(clients.map((client) => client.close()));
  }, 30_000);
});

/** Where a client resubscribed to a channel after a report. */
interface Resumed {
  /** Messages it had before the report. */
  readonly before: number;
  /** The channel's top when it resubscribed. */
  readonly offset: number;
}

/**
 * Waits until `channel` flows again at every client: messages keep coming,
 * or the node reported it could not vouch for the stream (a new epoch on
 * the new master), and the client, resubscribed, hears new ones. Every
 * client resumes within 5 s of `started` (C04).
 */
async function resume(
  clients: readonly TestClient[],
  channel: string,
  load: ReturnType<typeof publishing>,
  started: number,
): Promise<Map<TestClient, Resumed>> {
  const resumed = new Map<TestClient, Resumed>();
  const marks = clients.map((client) => client.messages(channel).length);
  await Promise.all(
    clients.map(async (client, i) => {
      await waitUntil(
        () =>
          reported(client, channel) ||
          client.messages(channel).length > marks[i]! + 5,
        5_000,
        "the channel flowing or reported",
      );
      if (!reported(client, channel)) return;
      const before = client.messages(channel).length;
      const result = await subscribeRetrying(client, channel);
      resumed.set(client, { before, offset: result.offset as number });
      await waitUntil(
        () => client.messages(channel).length > before,
        5_000,
        "a message after resubscribing",
      );
    }),
  );
  const took = Date.now() - started;
  expect(took).toBeLessThan(5_000);
  console.log(
    `${channel}: resumed at every client within ${took} ms, ` +
      `${resumed.size} of ${clients.length} after a report, ` +
      `${load.sent.get(channel)!.length} published so far`,
  );
  return resumed;
}

/**
 * Subscribes as the SDK does: an `unavailable` reply (the failover is not
 * over yet) is temporary, and the request is sent again after 100 ms.
 */
async function subscribeRetrying(
  client: TestClient,
  channel: string,
): Promise<SubscribeResult> {
  for (let attempt = 0; ; attempt++) {
    const reply = await client.request("subscribe", { channel });
    if (reply.type === "ok") return reply.result as SubscribeResult;
    if (reply.code !== "unavailable" || attempt >= 30) {
      throw new Error(`subscribe failed: ${JSON.stringify(reply)}`);
    }
    await sleep(100);
  }
}

function reported(client: TestClient, channel: string): boolean {
  return client.pushes.some(
    (f) =>
      f.type === "unsubscribed" &&
      f.channel === channel &&
      f.code === "insufficient_state",
  );
}

/**
 * Channels that did not move got everything, once, in order, with no
 * report. The moved one got, at each client, an unbroken run from the
 * start up to the report, if any, then everything after its resubscribe.
 */
async function expectDelivered(
  clients: readonly TestClient[],
  others: readonly string[],
  moved: string,
  load: ReturnType<typeof publishing>,
  resumed: Map<TestClient, Resumed>,
): Promise<void> {
  const data = (frames: readonly ServerFrame[]) =>
    frames.map((frame) => (frame.data as { i: number }).i);
  const sent = (name: string) => load.sent.get(name)!;
  for (const client of clients) {
    const after = resumed.get(client);
    const want = after
      ? sent(moved)
          .slice(0, after.before)
          .concat(sent(moved).filter((entry) => entry.offset > after.offset))
      : sent(moved);
    await waitUntil(
      () =>
        client.messages(moved).length >= want.length &&
        others.every(
          (name) => client.messages(name).length >= sent(name).length,
        ),
      5_000,
      "every message at every client",
    );
    for (const name of others) {
      expect(reported(client, name)).toBe(false);
      expect(data(client.messages(name))).toEqual(sent(name).map((e) => e.i));
    }
    expect(data(client.messages(moved))).toEqual(want.map((e) => e.i));
  }
}
