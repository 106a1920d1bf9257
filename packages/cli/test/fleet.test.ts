/**
 * A fleet behind nginx, run with the config `switchboard nginx` renders:
 * node processes on the redis engine (a redis-server of the test's own),
 * nginx from PATH in front, clients through nginx. Timers are scaled down
 * through options. Without nginx the tests are skipped, except under
 * CI=true, where they fail.
 */
import {
  SwitchboardClient,
  type WebSocketConstructor,
} from "@switchboard/client";
import { WebSocket } from "ws";
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
} from "vitest";

import {
  TestClient,
  inBatches,
  sleep,
  waitUntil,
  within,
  type ServerFrame,
} from "../../server/test/helpers.js";
import {
  killNodes,
  spawnNode,
  type NodeProcess,
} from "../../server/test/node-process.js";
import {
  startCluster,
  type OwnCluster,
} from "../../server/test/redis-cluster.js";
import {
  startRedis,
  startTogether,
  type OwnRedis,
} from "../../server/test/redis-server.js";
import {
  NGINX,
  NGINX_REQUIRED,
  NO_NGINX,
  startNginx,
  stopNginxes,
  type TestNginx,
} from "./nginx-process.js";

const API_KEY = "fleet-test-key-0123456789";

/** Node options of every fleet test: timers scaled down. */
const NODE_OPTIONS = {
  apiKey: API_KEY,
  trustProxy: "127.0.0.1",
  heartbeat: 1_000,
  pongTimeout: 1_000,
  presenceTtl: 1_000,
  livenessInterval: 300,
  reapInterval: 500,
  drainDelay: 300,
  drainWindow: 1_000,
  drainTimeout: 3_000,
  historySize: 5_000,
  recoveryMaxPublications: 1_000,
} as const;

/** nginx options of the fleet tests: a node that failed is back in 1 s. */
const PROXY_OPTIONS = {
  proxyTimeout: 5_000,
  connectTimeout: 1_000,
  failTimeout: 1_000,
} as const;

/** The fleet's Redis, and the two shards of the sharded fleet. */
let redises: OwnRedis[] = [];
/** Three masters of a Redis Cluster, for the cluster fleet. */
let cluster: OwnCluster | undefined;

/** Where the nodes of a fleet find Redis: one server, or two shards. */
const FLEETS: readonly [string, () => string][] = [
  ["one Redis", () => redises[0]!.url],
  ["two Redis shards", () => `a=${redises[1]!.url},b=${redises[2]!.url}`],
];

beforeAll(async () => {
  if (!NGINX) {
    if (NGINX_REQUIRED) throw new Error(`CI=true: ${NO_NGINX}`);
    return;
  }
  const [own, one, two, three] = await startTogether([
    startCluster(3, 0),
    startRedis(),
    startRedis(),
    startRedis(),
  ]);
  cluster = own;
  redises = [one, two, three];
}, 60_000);

beforeEach((context) => {
  if (!NGINX) context.skip(NO_NGINX);
});

afterEach(async () => {
  for (const publisher of publishers) publisher.halt();
  killNodes();
  await stopNginxes();
});

afterAll(async () => {
  await Promise.all([...redises.map((redis) => redis.stop()), cluster?.stop()]);
});

let unique = 0;
/** Channels no other test uses. */
function channels(name: string, count: number): string[] {
  unique += 1;
  return Array.from(
    { length: count },
    (_, i) => `fleet:${name}-${unique}-${i}`,
  );
}

/**
 * Starts `count` node processes, `n0`, `n1`... on the test's Redis, or
 * on the Redis `url` names.
 */
async function startNodes(
  count: number,
  options: Record<string, number | string> = {},
  url = redises[0]!.url,
): Promise<NodeProcess[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      spawnNode(url, nodeOptions(i, options)),
    ),
  );
}

function nodeOptions(
  index: number,
  options: Record<string, number | string> = {},
): Record<string, number | string> {
  return { ...NODE_OPTIONS, nodeId: `n${index}`, ...options };
}

/** A node's `switchboard_connections`, read from its /metrics. */
async function connectionCount(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await response.text();
  const match = /^switchboard_connections (\d+)$/m.exec(text);
  if (!match) throw new Error(`no switchboard_connections: ${text}`);
  return Number(match[1]);
}

/** POST /api/publish with the API key; throws unless 200. */
async function publishVia(
  base: string,
  channel: string,
  data: unknown,
  key?: string,
): Promise<{ epoch: string; offset: number; duplicate?: boolean }> {
  const response = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${API_KEY}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ channel, data, key }),
    signal: AbortSignal.timeout(3_000),
  });
  const text = await response.text();
  if (response.status !== 200) {
    throw new Error(`publish ${response.status}: ${text}`);
  }
  return JSON.parse(text);
}

/** Publishers still running, halted after each test. */
const publishers = new Set<LoadPublisher>();

/**
 * Publishes `{seq}` on each channel, one after the other per channel at
 * `perSecond` each, through nginx; a failed publish is retried with its
 * key, so it lands once. Keeps every result: offset -> seq per channel.
 */
class LoadPublisher {
  /** channel -> offset -> seq */
  readonly published = new Map<string, Map<number, number>>();
  retries = 0;
  private stopped = false;
  private halted = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly base: string,
    private readonly channels: readonly string[],
    private readonly perSecond: number,
  ) {
    for (const channel of channels) this.published.set(channel, new Map());
  }

  start(): void {
    publishers.add(this);
    this.running = Promise.all(
      this.channels.map((channel) => this.loop(channel)),
    ).then(() => undefined);
    // Reported by `stop`; a test that never gets there fails otherwise.
    this.running.catch(() => undefined);
  }

  /**
   * Stops after the publishes in flight; resolves when they are done,
   * rejects if a publish failed for good.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    publishers.delete(this);
  }

  /** Stops at once, retrying nothing (for `afterEach`). */
  halt(): void {
    this.stopped = true;
    this.halted = true;
    publishers.delete(this);
  }

  get count(): number {
    let count = 0;
    for (const results of this.published.values()) count += results.size;
    return count;
  }

  private async loop(channel: string): Promise<void> {
    const interval = 1000 / this.perSecond;
    const started = Date.now();
    // Bounded: a run is seconds long, far below this many publishes.
    for (let seq = 0; seq < 100_000 && !this.stopped; seq++) {
      await sleep(started + seq * interval - Date.now());
      const result = await this.publishOnce(channel, seq);
      this.published.get(channel)!.set(result.offset, seq);
    }
  }

  private async publishOnce(channel: string, seq: number) {
    let failure: unknown;
    for (let attempt = 0; attempt < 60 && !this.halted; attempt++) {
      try {
        return await publishVia(this.base, channel, { seq }, `s${seq}`);
      } catch (error) {
        failure = error;
        this.retries += 1;
        await sleep(50);
      }
    }
    throw new Error(`publish ${channel} ${seq} failed: ${String(failure)}`);
  }
}

/** An SDK client subscribed to one channel, and all it saw. */
class Watcher {
  readonly client: SwitchboardClient;
  /** The position of the first subscribe. */
  start: { epoch: string; offset: number } | undefined;
  /** What the SDK delivered, in order. */
  readonly delivered: { epoch: string; offset: number; seq: number }[] = [];
  readonly discontinuities: unknown[] = [];
  /** Each resubscribe's `recovered`. */
  readonly resubscribes: (boolean | undefined)[] = [];
  readonly disconnects: number[] = [];
  readonly disconnectedAt: number[] = [];
  /** From a disconnect to the next subscribe reply, ms. */
  readonly reconnectMs: number[] = [];
  /** Raw frames: message offsets as pushed or recovered, per socket. */
  readonly rawOffsets: number[][] = [];
  /** Raw `reconnect` pushes (the node is draining). */
  drainNotices = 0;
  /** The node of the current connection. */
  node: string | undefined;
  private lostAt: number | undefined;

  constructor(
    url: string,
    readonly channel: string,
  ) {
    // The first reconnect spreads over 1 s here rather than 6 s, to keep
    // the suite short; C16's full window runs in the soak suite.
    this.client = new SwitchboardClient({
      url,
      reconnectSpreadMs: 1_000,
      webSocket: this.countingWebSocket(),
    });
    this.client.on("connected", (result) => (this.node = result.node));
    this.client.on("disconnected", ({ code }) => {
      this.disconnects.push(code);
      this.disconnectedAt.push(Date.now());
      this.lostAt = Date.now();
    });
    const subscription = this.client.subscribe(channel);
    subscription.on("subscribed", (info) => {
      if (!info.resubscribed) {
        this.start = { epoch: info.epoch, offset: info.offset };
        return;
      }
      this.resubscribes.push(info.recovered);
      if (this.lostAt !== undefined) {
        this.reconnectMs.push(Date.now() - this.lostAt);
        this.lostAt = undefined;
      }
    });
    subscription.on("message", (message) =>
      this.delivered.push({
        epoch: message.epoch,
        offset: message.offset,
        seq: (message.data as { seq: number }).seq,
      }),
    );
    subscription.on("discontinuity", (info) => this.discontinuities.push(info));
  }

  async connect(): Promise<void> {
    await this.client.connect();
    await this.client.getSubscription(this.channel)!.ready();
  }

  /** A `ws` class that counts what arrives before the SDK sees it. */
  private countingWebSocket(): WebSocketConstructor {
    const { rawOffsets } = this;
    const raw = (data: string, offsets: number[]) => this.raw(data, offsets);
    class Counting extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        const offsets: number[] = [];
        rawOffsets.push(offsets);
        this.on("message", (data) => raw(String(data), offsets));
      }
    }
    return Counting as unknown as WebSocketConstructor;
  }

  private raw(text: string, offsets: number[]): void {
    const frame = JSON.parse(text) as ServerFrame;
    if (frame.type === "reconnect") this.drainNotices += 1;
    if (frame.type === "message" && frame.channel === this.channel) {
      offsets.push(frame.offset!);
    }
    const recovered = frame.result?.publications as ServerFrame[] | undefined;
    if (frame.type === "ok" && Array.isArray(recovered)) {
      for (const publication of recovered) {
        if (publication.channel === this.channel) {
          offsets.push(publication.offset!);
        }
      }
    }
  }
}

/** Offsets above `after`, in order, of what `publisher` published. */
function expectedOffsets(published: Map<number, number>, after: number) {
  return [...published.keys()]
    .filter((offset) => offset > after)
    .sort((a, b) => a - b);
}

/** Waits until every watcher has every message of its channel. */
async function allDelivered(
  watchers: readonly Watcher[],
  publisher: LoadPublisher,
  ms: number,
): Promise<void> {
  const missing = () =>
    watchers.filter((watcher) => {
      const published = publisher.published.get(watcher.channel)!;
      const expected = expectedOffsets(published, watcher.start!.offset);
      return watcher.delivered.length < expected.length;
    });
  await waitUntil(() => missing().length === 0, ms, "every message").catch(
    () => {
      throw new Error(
        `${missing().length} clients miss messages, e.g. ` +
          JSON.stringify(summary(missing()[0]!, publisher)),
      );
    },
  );
}

/** What a watcher got against what it should have. */
function summary(watcher: Watcher, publisher: LoadPublisher) {
  const published = publisher.published.get(watcher.channel)!;
  const expected = expectedOffsets(published, watcher.start!.offset);
  const got = watcher.delivered.map((m) => m.offset);
  const seen = new Set(got);
  return {
    channel: watcher.channel,
    expected: expected.length,
    delivered: got.length,
    missing: expected.filter((offset) => !seen.has(offset)).slice(0, 10),
    duplicates: got.length - seen.size,
    disconnects: watcher.disconnects,
    resubscribes: watcher.resubscribes,
  };
}

/**
 * Every watcher got exactly the published offsets of its channel after
 * its first subscribe, in order, once each, with the published data, in
 * one epoch and with no discontinuity.
 */
function expectExactDelivery(
  watchers: readonly Watcher[],
  publisher: LoadPublisher,
): void {
  for (const watcher of watchers) {
    const published = publisher.published.get(watcher.channel)!;
    const expected = expectedOffsets(published, watcher.start!.offset);
    expect(
      watcher.delivered.map((m) => m.offset),
      JSON.stringify(summary(watcher, publisher)),
    ).toEqual(expected);
    expect(watcher.delivered.map((m) => m.seq)).toEqual(
      expected.map((offset) => published.get(offset)),
    );
    expect(new Set(watcher.delivered.map((m) => m.epoch))).toEqual(
      new Set([watcher.start!.epoch]),
    );
    expect(watcher.discontinuities).toEqual([]);
  }
}

/**
 * Offsets that reached a watcher twice: on one socket (which the server
 * must never do) and on two (the SDK let one copy go unprocessed, e.g.
 * on a socket it was leaving, and recovered it on the next).
 */
function rawDuplicates(watchers: readonly Watcher[]) {
  let sameSocket = 0;
  let acrossSockets = 0;
  for (const watcher of watchers) {
    const all = watcher.rawOffsets.flat();
    for (const offsets of watcher.rawOffsets) {
      sameSocket += offsets.length - new Set(offsets).size;
    }
    acrossSockets += all.length - new Set(all).size;
  }
  return { sameSocket, acrossSockets: acrossSockets - sameSocket };
}

/** Each socket of each watcher got its offsets in increasing order. */
function expectIncreasingPerSocket(watchers: readonly Watcher[]): void {
  for (const watcher of watchers) {
    for (const offsets of watcher.rawOffsets) {
      const sorted = [...offsets].sort((a, b) => a - b);
      expect(offsets).toEqual(sorted);
    }
  }
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** One line of figures for the test log. */
function report(what: string, figures: Record<string, unknown>): void {
  process.stdout.write(`${what}: ${JSON.stringify(figures)}\n`);
}

/** Connects `count` SDK clients through nginx, spread over `names`. */
async function watchers(
  nginx: TestNginx,
  names: readonly string[],
  count: number,
): Promise<Watcher[]> {
  const all = Array.from(
    { length: count },
    (_, i) => new Watcher(nginx.url, names[i % names.length]!),
  );
  await inBatches(all.length, 20, (i) => all[i]!.connect());
  return all;
}

async function closeAll(all: readonly Watcher[]): Promise<void> {
  await Promise.all(all.map((watcher) => watcher.client.close()));
}

/**
 * 300 clients through nginx on 3 nodes, 1000 messages through every node
 * and nginx: every client gets every message of its channel in one order,
 * with consecutive offsets.
 */
async function oneOrder(fleet: string, url: () => string): Promise<void> {
  const nodes = await startNodes(3, {}, url());
  const nginx = await startNginx({
    ...PROXY_OPTIONS,
    nodes: nodes.map((node) => `127.0.0.1:${node.port}`),
  });
  const names = channels("order", 5);
  // One in ten puts something in the query string, which the access
  // log must not keep.
  const clients = await inBatches(300, 25, async (i) => {
    const path = i % 10 === 0 ? `/ws?trace=secret-${i}` : "/ws";
    const client = await TestClient.connect(nginx.port, {}, { path });
    await client.subscribe(names[i % names.length]!);
    return client;
  });
  const perNode = await Promise.all(
    nodes.map((node) => connectionCount(node.port)),
  );
  expect(perNode.reduce((a, b) => a + b)).toBe(300);
  for (const count of perNode) expect(count).toBeGreaterThan(0);

  // 1000 messages, 16 in flight: through each node and through nginx.
  const bases = [
    ...nodes.map((node) => `http://127.0.0.1:${node.port}`),
    `http://127.0.0.1:${nginx.port}`,
  ];
  const started = Date.now();
  const results = await inBatches(1000, 16, async (i) => {
    const channel = names[i % names.length]!;
    const result = await publishVia(bases[i % bases.length]!, channel, {
      i,
    });
    return { channel, i, ...result };
  });

  const perClient = 1000 / names.length;
  await waitUntil(
    () => clients.every((client) => client.messages().length >= perClient),
    20_000,
    "every message at every client",
  );
  const elapsed = Date.now() - started;
  for (const [index, name] of names.entries()) {
    const expected = results
      .filter((result) => result.channel === name)
      .sort((a, b) => a.offset - b.offset)
      .map((result) => ({
        epoch: result.epoch,
        offset: result.offset,
        data: { i: result.i },
      }));
    expect(expected.map((m) => m.offset)).toEqual(
      Array.from({ length: perClient }, (_, k) => k + 1),
    );
    for (const client of clients.filter((_, i) => i % names.length === index)) {
      const got = client.messages(name).map((frame) => ({
        epoch: frame.epoch,
        offset: frame.offset,
        data: frame.data,
      }));
      expect(got).toEqual(expected);
    }
  }
  report(`300 clients, ${fleet}`, {
    perNode,
    messages: 1000,
    deliveries: 300 * perClient,
    ms: elapsed,
  });
  await Promise.all(clients.map((client) => client.close()));
  await waitUntil(
    () => nginx.read("access.log").split('"GET /ws ').length > 300,
    5_000,
    "300 upgrades in the access log",
  );
  expect(nginx.read("access.log")).not.toContain("secret");
  expect(nginx.read("access.log")).toContain('"GET /ws HTTP/1.1" 101 ');
}

describe.each(FLEETS)("a fleet on %s behind nginx", (fleet, url) => {
  it(
    "gives 300 clients on 3 nodes every message in one order",
    () => oneOrder(fleet, url),
    60_000,
  );

  it("moves the clients of a node killed by -9 with no gap (C06)", async () => {
    const nodes = await startNodes(3, {}, url());
    const nginx = await startNginx({
      ...PROXY_OPTIONS,
      nodes: nodes.map((node) => `127.0.0.1:${node.port}`),
    });
    const names = channels("kill", 4);
    const all = await watchers(nginx, names, 60);
    const victims = all.filter((watcher) => watcher.node === "n0");
    expect(victims.length).toBeGreaterThan(0);

    const publisher = new LoadPublisher(
      `http://127.0.0.1:${nginx.port}`,
      names,
      50,
    );
    publisher.start();
    await sleep(1_500);
    const killedAt = Date.now();
    nodes[0]!.kill();
    await sleep(2_500);
    await publisher.stop();

    await allDelivered(all, publisher, 15_000);
    expectExactDelivery(all, publisher);
    for (const watcher of victims) {
      expect(watcher.disconnects.length).toBeGreaterThan(0);
      expect(watcher.resubscribes.every((r) => r === true)).toBe(true);
    }
    for (const watcher of all.filter((w) => !victims.includes(w))) {
      expect(watcher.disconnects).toEqual([]);
    }
    const moved = victims.flatMap((watcher) => watcher.reconnectMs);
    const survivors = await Promise.all(
      nodes.slice(1).map((node) => connectionCount(node.port)),
    );
    expect(survivors.reduce((a, b) => a + b)).toBe(all.length);
    report(`kill -9, ${fleet}`, {
      clients: all.length,
      victims: victims.length,
      published: publisher.count,
      publishRetries: publisher.retries,
      reconnectMsMedian: percentile(moved, 0.5),
      reconnectMsMax: Math.max(...moved),
      rawDuplicates: rawDuplicates(all),
      sinceKillMs: Date.now() - killedAt,
    });
    expect(Math.max(...moved)).toBeLessThan(5_000);
    expect(rawDuplicates(all).sameSocket).toBe(0);
    expectIncreasingPerSocket(all);
    await closeAll(all);
  }, 60_000);

  it("delivers once and in order in a rolling restart (C09)", async () => {
    const nodes = await startNodes(3, {}, url());
    const nginx = await startNginx({
      ...PROXY_OPTIONS,
      nodes: nodes.map((node) => `127.0.0.1:${node.port}`),
    });
    const names = channels("rolling", 4);
    const all = await watchers(nginx, names, 60);
    const publisher = new LoadPublisher(
      `http://127.0.0.1:${nginx.port}`,
      names,
      50,
    );
    publisher.start();
    await sleep(1_000);

    const drains: { from: number; to: number }[] = [];
    for (let i = 0; i < nodes.length; i++) {
      const from = Date.now();
      const status = await within(nodes[i]!.stop(), 10_000, `n${i} exit`);
      expect(status).toBe(0);
      drains.push({ from, to: Date.now() });
      nodes[i] = await within(
        spawnNode(url(), nodeOptions(i, { port: nodes[i]!.port })),
        10_000,
        `n${i} restart`,
      );
      await waitUntil(
        async () =>
          (
            await fetch(`http://127.0.0.1:${nodes[i]!.port}/readyz`, {
              signal: AbortSignal.timeout(1_000),
            }).catch(() => undefined)
          )?.ok === true,
        5_000,
        `n${i} ready`,
      );
      await sleep(1_000);
    }
    await publisher.stop();

    await allDelivered(all, publisher, 15_000);
    expectExactDelivery(all, publisher);
    const codes = all.flatMap((watcher) => watcher.disconnects);
    expect(codes.length).toBeGreaterThan(0);
    expect(new Set(codes)).toEqual(new Set([1001]));
    for (const watcher of all) {
      expect(watcher.drainNotices).toBe(watcher.disconnects.length);
      expect(watcher.resubscribes.every((r) => r === true)).toBe(true);
    }
    const moves = all.flatMap((watcher) => watcher.reconnectMs);
    // C16: each drain spreads its clients over drainWindow (1 s here), so
    // no 100 ms holds half of them.
    const times = all.flatMap((watcher) => watcher.disconnectedAt);
    const spread = drains.map(({ from, to }) => {
      const mine = times.filter((t) => t >= from && t <= to);
      const buckets = new Map<number, number>();
      for (const t of mine) {
        const bucket = Math.floor((t - from) / 100);
        buckets.set(bucket, (buckets.get(bucket) ?? 0) + 1);
      }
      return {
        clients: mine.length,
        largestShare: Math.max(...buckets.values()) / mine.length,
      };
    });
    report(`rolling restart, ${fleet}`, {
      clients: all.length,
      published: publisher.count,
      publishRetries: publisher.retries,
      moves: codes.length,
      drainMs: drains.map(({ from, to }) => to - from),
      spread,
      reconnectMsMedian: percentile(moves, 0.5),
      reconnectMsMax: Math.max(...moves),
      rawDuplicates: rawDuplicates(all),
    });
    expect(rawDuplicates(all).sameSocket).toBe(0);
    expectIncreasingPerSocket(all);
    for (const { clients, largestShare } of spread) {
      if (clients >= 10) expect(largestShare).toBeLessThan(0.5);
    }
    await closeAll(all);
  }, 60_000);
});

describe("a fleet on a Redis Cluster behind nginx", () => {
  it(
    "gives 300 clients on 3 nodes every message in one order",
    () => oneOrder("a Redis Cluster", () => cluster!.url),
    60_000,
  );
});

describe("a fleet behind the generated nginx config", () => {
  it("keeps idle clients past the proxy read timeout (C15)", async () => {
    // The proxy cuts a socket idle for 3 s; the nodes ping every second.
    // The control fleet pings never: nginx closes its clients at ~3 s.
    const proxyTimeout = 3_000;
    const [beating, silent] = await Promise.all([
      startNodes(2, { heartbeat: 1_000, pongTimeout: 1_000 }),
      startNodes(2, { heartbeat: 0, pongTimeout: 60_000 }),
    ]);
    const [withPings, control] = await Promise.all(
      [beating, silent].map((nodes) =>
        startNginx({
          ...PROXY_OPTIONS,
          proxyTimeout,
          nodes: nodes.map((node) => `127.0.0.1:${node.port}`),
        }),
      ),
    );
    const [name] = channels("idle", 1);
    const idle = async (nginx: TestNginx) =>
      Promise.all(
        Array.from({ length: 10 }, async () => {
          const client = await TestClient.connect(nginx.port);
          await client.subscribe(name!);
          return { client, idleSince: Date.now() };
        }),
      );
    const [kept, cut] = await Promise.all([idle(withPings!), idle(control!)]);

    const closedAfter: number[] = [];
    for (const { client, idleSince } of cut) {
      void client.closed.then(() => closedAfter.push(Date.now() - idleSince));
    }
    await sleep(8_000);

    expect(kept.filter(({ client }) => !client.isOpen)).toEqual([]);
    for (const { client } of kept) expect(client.pings).toBeGreaterThan(5);
    const port = beating[0]!.port;
    await publishVia(`http://127.0.0.1:${port}`, name!, "still here");
    await Promise.all(
      kept.map(({ client }) => client.waitForMessage(name!, "still here")),
    );

    expect(closedAfter).toHaveLength(10);
    for (const { client } of cut) expect(client.closedWith?.code).toBe(1006);
    // nginx's timer starts when the subscribe reply passed through it; the
    // test reads it later, by up to a few hundred ms on a busy machine.
    for (const ms of closedAfter) {
      expect(ms).toBeGreaterThanOrEqual(proxyTimeout - 500);
      expect(ms).toBeLessThan(proxyTimeout + 2_000);
    }
    report("idle clients", {
      proxyTimeoutMs: proxyTimeout,
      keptOpen: kept.filter(({ client }) => client.isOpen).length,
      pingsMin: Math.min(...kept.map(({ client }) => client.pings)),
      controlClosedAfterMs: [
        Math.min(...closedAfter),
        Math.max(...closedAfter),
      ],
    });
    await Promise.all(kept.map(({ client }) => client.close()));
  }, 60_000);

  it("refuses a proxy without upgrade headers with 426 (C15)", async () => {
    const nodes = await startNodes(1);
    // The generated config without the Upgrade and Connection headers.
    const broken = await startNginx(
      { ...PROXY_OPTIONS, nodes: [`127.0.0.1:${nodes[0]!.port}`] },
      (config) =>
        config
          .split("\n")
          .filter(
            (line) => !/proxy_set_header (Upgrade|Connection \$)/.test(line),
          )
          .join("\n"),
    );
    await expect(TestClient.open(broken.port)).rejects.toThrow(
      "upgrade refused: 426",
    );

    const client = new SwitchboardClient({
      url: broken.url,
      reconnectSpreadMs: 500,
    });
    const disconnects: { code: number; reconnect: boolean; at: number }[] = [];
    client.on("disconnected", ({ code, reconnect }) =>
      disconnects.push({ code, reconnect, at: Date.now() }),
    );
    const started = Date.now();
    void client.connect().catch(() => undefined);
    await sleep(4_000);
    await client.close();

    // Backoff with full jitter from 500 ms, doubling: a handful of
    // attempts in 4 s (ten would need very low draws), not a hot loop.
    const attempts = broken
      .read("access.log")
      .split("\n")
      .filter((line) => line.includes('"GET /ws HTTP/1.1" 426 '));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeLessThanOrEqual(10);
    expect(Math.abs(disconnects.length - attempts.length)).toBeLessThan(2);
    expect(disconnects.every((d) => d.code === 1006 && d.reconnect)).toBe(true);
    report("broken proxy", {
      attemptsIn4s: attempts.length,
      gapsMs: disconnects.map((d, i) =>
        i === 0 ? d.at - started : d.at - disconnects[i - 1]!.at,
      ),
    });
  }, 30_000);
});
