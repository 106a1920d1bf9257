/**
 * C16's herd: SDK clients, each with an HS256 token of its own and three
 * channel subscriptions, on two node processes (redis engine) behind
 * nginx, while a publisher keeps every channel busy. A test drops many of
 * them at once (kill -9 of a node, an nginx restart) and reads when each
 * tried to reconnect, when it was back, and what it received.
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

import {
  DEFAULT_RECONNECT_SPREAD_MS,
  STABLE_CONNECTION_MS,
  SwitchboardClient,
  type WebSocketConstructor,
} from "@switchboard/client";
import { expect } from "vitest";
import { WebSocket } from "ws";

import {
  inBatches,
  mintToken,
  sleep,
  waitUntil,
} from "../../server/test/helpers.js";
import { spawnNode, type NodeProcess } from "../../server/test/node-process.js";
import { startNginx, type TestNginx } from "./nginx-process.js";

const API_KEY = "herd-test-key-0123456789";
const TOKEN_SECRET = "herd-test-secret-0123456789abcdef";

/** Channels each client subscribes to. */
export const CHANNELS_PER_CLIENT = 3;

/** How a herd is set up. */
export interface HerdOptions {
  /** The Redis of the nodes. */
  readonly redisUrl: string;
  readonly clients: number;
  /** Channels in all; client i takes channels i, i + 1 and i + 2. */
  readonly channels: number;
  /** The SDK's `reconnectSpreadMs`. @default the SDK's, 6 s */
  readonly reconnectSpreadMs?: number;
  /** Each channel gets one publish per interval, ms. */
  readonly publishIntervalMs: number;
  /** Node processes behind nginx. @default 2 */
  readonly nodes?: number;
  /** Node options on top of the herd's own (API key, token secret). */
  readonly node?: Record<string, number | string>;
}

/** A position in a channel. */
interface Position {
  readonly epoch: string;
  readonly offset: number;
}

/** One SDK client of the herd, and all it did and saw. */
export class HerdClient {
  readonly client: SwitchboardClient;
  /** When each WebSocket was constructed: every connect attempt. */
  readonly attempts: number[] = [];
  /** Each reconnect delay the SDK drew, and when, from its debug log. */
  readonly delays: { at: number; ms: number }[] = [];
  /** Channel -> position of the first subscribe. */
  readonly start = new Map<string, Position>();
  /** Channel -> what the SDK delivered, in order. */
  readonly delivered = new Map<string, Position[]>();
  /** Channel -> each resubscribe: when, and its `recovered`. */
  readonly resubscribes = new Map<
    string,
    { at: number; recovered: boolean | undefined }[]
  >();
  discontinuities = 0;
  /** The node id of the current connection. */
  node: string | undefined;

  constructor(
    url: string,
    token: string,
    readonly channels: readonly string[],
    reconnectSpreadMs = DEFAULT_RECONNECT_SPREAD_MS,
  ) {
    this.client = new SwitchboardClient({
      url,
      token,
      reconnectSpreadMs,
      webSocket: this.countingWebSocket(),
      debug: (message, fields) => {
        if (message === "reconnecting") {
          this.delays.push({ at: Date.now(), ms: Number(fields?.delayMs) });
        }
      },
    });
    this.client.on("connected", (result) => (this.node = result.node));
    for (const channel of channels) {
      const delivered: Position[] = [];
      const resubscribes: { at: number; recovered: boolean | undefined }[] = [];
      this.delivered.set(channel, delivered);
      this.resubscribes.set(channel, resubscribes);
      const subscription = this.client.subscribe(channel);
      subscription.on("subscribed", (info) => {
        if (info.resubscribed) {
          resubscribes.push({ at: Date.now(), recovered: info.recovered });
        } else {
          this.start.set(channel, { epoch: info.epoch, offset: info.offset });
        }
      });
      subscription.on("message", ({ epoch, offset }) =>
        delivered.push({ epoch, offset }),
      );
      subscription.on("discontinuity", () => (this.discontinuities += 1));
    }
  }

  async connect(): Promise<void> {
    await this.client.connect();
    await Promise.all(
      this.channels.map((channel) =>
        this.client.getSubscription(channel)!.ready(),
      ),
    );
  }

  /** Whether every channel resubscribed, recovered or not, after `since`. */
  backSince(since: number): boolean {
    return this.channels.every((channel) =>
      this.resubscribes.get(channel)!.some(({ at }) => at >= since),
    );
  }

  /** The last resubscribe reply of any channel, ms since the epoch. */
  lastResubscribe(): number {
    const all = this.channels.flatMap((channel) =>
      this.resubscribes.get(channel)!.map(({ at }) => at),
    );
    return Math.max(...all);
  }

  /** A `ws` class that notes each construction. */
  private countingWebSocket(): WebSocketConstructor {
    const { attempts } = this;
    class Counting extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        attempts.push(Date.now());
      }
    }
    return Counting as unknown as WebSocketConstructor;
  }
}

/** The reconnects of the clients that lost their connection at `from`. */
export interface Herding {
  readonly victims: number;
  /** Their connect attempts in [from, from + windowMs), per bucket. */
  readonly buckets: number[];
  /** Their attempts at or after `from + windowMs`. */
  readonly late: number;
  /** The largest bucket over the number of victims. */
  readonly largestShare: number;
  /** Of each victim's first attempt after `from`, per bucket. */
  readonly firstBuckets: number[];
  /** First attempts: from `from`, ms, p10 / p50 / p90 / max. */
  readonly firstAttemptMs: readonly number[];
  /**
   * The first reconnect delay each victim drew after `from`, as the SDK
   * logged it, per bucket: the spread itself, before this process's
   * scheduling moves the attempts.
   */
  readonly drawnBuckets: number[];
  /** The largest first delay drawn, ms. */
  readonly drawnMaxMs: number;
  /** From `from` to the last victim's last resubscribe reply, ms. */
  readonly backMs: number;
}

/** Counts `times` in `count` buckets of `width` ms from `from`. */
function bucketed(
  times: readonly number[],
  from: number,
  width: number,
  count: number,
): number[] {
  const buckets = Array.from({ length: count }, () => 0);
  for (const time of times) {
    const index = Math.floor((time - from) / width);
    if (index >= 0 && index < count) buckets[index]! += 1;
  }
  return buckets;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/**
 * What `victims`, dropped at `from`, did: attempts per bucket of
 * `bucketMs` over `windowMs`, and when they were back.
 */
export function herding(
  victims: readonly HerdClient[],
  from: number,
  bucketMs: number,
  windowMs: number,
): Herding {
  const count = Math.ceil(windowMs / bucketMs);
  const attempts = victims.flatMap((v) => v.attempts.filter((t) => t >= from));
  const firsts = victims.map((v) => v.attempts.find((t) => t >= from)!);
  const buckets = bucketed(attempts, from, bucketMs, count);
  const delays = firsts.map((t) => t - from);
  const drawn = victims.map((v) => v.delays.find(({ at }) => at >= from)!.ms);
  return {
    victims: victims.length,
    buckets,
    late: attempts.filter((t) => t >= from + windowMs).length,
    largestShare: Math.max(...buckets) / victims.length,
    firstBuckets: bucketed(firsts, from, bucketMs, count),
    firstAttemptMs: [0.1, 0.5, 0.9, 1].map((p) => percentile(delays, p)),
    drawnBuckets: bucketed(drawn, 0, bucketMs, count),
    drawnMaxMs: Math.max(...drawn),
    backMs: Math.max(...victims.map((v) => v.lastResubscribe())) - from,
  };
}

/**
 * Samples the CPU use of processes from /proc, as a share of one core
 * per interval; Linux only.
 */
export class CpuSampler {
  /** pid -> shares of one core, one per interval. */
  readonly shares = new Map<number, number[]>();
  private readonly timer: NodeJS.Timeout;
  private last = new Map<number, number>();
  private lastAt = Date.now();

  constructor(pids: readonly number[], intervalMs = 1_000) {
    for (const pid of pids) {
      this.shares.set(pid, []);
      this.last.set(pid, CpuSampler.ticks(pid));
    }
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** The largest share of one core seen for any process. */
  get peak(): number {
    return Math.max(0, ...[...this.shares.values()].flat());
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    const now = Date.now();
    const seconds = (now - this.lastAt) / 1000;
    this.lastAt = now;
    for (const [pid, before] of this.last) {
      const ticks = CpuSampler.ticks(pid);
      // Linux counts CPU time in clock ticks of 1/100 s (USER_HZ).
      if (ticks >= before) {
        this.shares.get(pid)!.push((ticks - before) / 100 / seconds);
      }
      this.last.set(pid, ticks);
    }
  }

  /** utime + stime of `pid`; -1 once it is gone. */
  private static ticks(pid: number): number {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name, which may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return -1;
    }
  }
}

/** The nodes, nginx and the clients, and a publisher on every channel. */
export class Herd {
  /** Channel -> the highest offset published. */
  readonly top = new Map<string, number>();
  publishRetries = 0;
  /** Runs of the publisher so far; keys differ from run to run. */
  private runs = 0;
  private publishing: Promise<void> | undefined;
  private stopped = false;

  private constructor(
    private readonly options: HerdOptions,
    readonly nodes: NodeProcess[],
    public nginx: TestNginx,
    readonly clients: readonly HerdClient[],
    readonly channels: readonly string[],
  ) {}

  /** Starts the nodes and nginx, and connects every client. */
  static async start(options: HerdOptions, name: string): Promise<Herd> {
    const nodes = await Promise.all(
      Array.from({ length: options.nodes ?? 2 }, (_, i) =>
        spawnNode(options.redisUrl, nodeOptions(options, i)),
      ),
    );
    const nginx = await startNginx(proxyOptions(nodes));
    const channels = Array.from(
      { length: options.channels },
      (_, i) => `herd:${name}-${i}`,
    );
    const clients = await Promise.all(
      Array.from({ length: options.clients }, async (_, i) => {
        const mine = Array.from(
          { length: CHANNELS_PER_CLIENT },
          (_, k) => channels[(i + k) % channels.length]!,
        );
        const token = await mintToken(TOKEN_SECRET, {
          sub: `user-${i}`,
          sb: { subscribe: mine },
        });
        return new HerdClient(
          nginx.url,
          token,
          mine,
          options.reconnectSpreadMs,
        );
      }),
    );
    await inBatches(clients.length, 50, (i) => clients[i]!.connect());
    return new Herd(options, nodes, nginx, clients, channels);
  }

  /** The clients connected to node `index` (`n<index>`). */
  on(index: number): HerdClient[] {
    return this.clients.filter((client) => client.node === `n${index}`);
  }

  /**
   * Publishes `{key}` on every channel once per `publishIntervalMs`
   * through nginx, each with a key and retried until it lands once.
   */
  startPublishing(): void {
    this.stopped = false;
    this.runs += 1;
    const run = this.runs;
    const loops = this.channels.map(async (channel) => {
      const started = Date.now();
      for (let seq = 0; !this.stopped; seq++) {
        await sleep(
          started + seq * this.options.publishIntervalMs - Date.now(),
        );
        const { offset } = await this.publish(channel, `r${run}-${seq}`);
        this.top.set(channel, Math.max(offset, this.top.get(channel) ?? 0));
      }
    });
    this.publishing = Promise.all(loops).then(() => undefined);
    this.publishing.catch(() => undefined);
  }

  /** Stops after the publishes in flight; rejects if one failed. */
  async stopPublishing(): Promise<void> {
    this.stopped = true;
    await this.publishing;
  }

  /** SIGKILLs node `index`; returns when. */
  kill(index: number): number {
    const at = Date.now();
    this.nodes[index]!.kill();
    return at;
  }

  /** Starts node `index` again where it was, with the same node id. */
  async restartNode(index: number): Promise<void> {
    this.nodes[index] = await spawnNode(this.options.redisUrl, {
      ...nodeOptions(this.options, index),
      port: this.nodes[index]!.port,
    });
  }

  /**
   * Drains node `index` with SIGTERM and starts it again where it was
   * once it exited; resolves with its exit status when it is ready.
   */
  async roll(index: number): Promise<number | null> {
    const status = await this.nodes[index]!.stop();
    await this.restartNode(index);
    const url = `http://127.0.0.1:${this.nodes[index]!.port}/readyz`;
    const ready = async () =>
      (await fetch(url).catch(() => undefined))?.status === 200;
    await waitUntil(ready, 10_000, `n${index} ready`);
    return status;
  }

  /**
   * Stops nginx at once (every client drops) and starts it again on the
   * same port; returns when it was stopped.
   */
  async restartNginx(): Promise<number> {
    const { port } = this.nginx;
    const at = Date.now();
    await this.nginx.stop("SIGTERM");
    this.nginx = await startNginx(proxyOptions(this.nodes), undefined, port);
    return at;
  }

  /** Waits until every one of `clients` resubscribed everything. */
  async back(
    clients: readonly HerdClient[],
    since: number,
    ms: number,
  ): Promise<void> {
    const missing = () => clients.filter((c) => !c.backSince(since)).length;
    await waitUntil(() => missing() === 0, ms, "every client back").catch(
      () => {
        throw new Error(`${missing()} clients not back after ${ms} ms`);
      },
    );
  }

  /** Waits until every client has every published message. */
  async delivered(ms: number): Promise<void> {
    const missing = () =>
      this.clients.filter((client) =>
        client.channels.some(
          (channel) =>
            (client.delivered.get(channel)!.at(-1)?.offset ?? 0) <
            this.top.get(channel)!,
        ),
      ).length;
    await waitUntil(() => missing() === 0, ms, "every message").catch(() => {
      throw new Error(`${missing()} clients miss messages after ${ms} ms`);
    });
  }

  /**
   * Clients whose offsets on a channel are not exactly the ones after
   * their first subscribe up to the top, in one epoch, with no
   * discontinuity; empty when nothing was lost, doubled or reordered.
   */
  gaps(): { user: number; channel: string; offsets: number[] }[] {
    const found: { user: number; channel: string; offsets: number[] }[] = [];
    for (const [user, client] of this.clients.entries()) {
      for (const channel of client.channels) {
        const start = client.start.get(channel)!;
        const got = client.delivered.get(channel)!;
        const top = this.top.get(channel)!;
        const consecutive =
          got.length === top - start.offset &&
          got.every(
            (p, i) =>
              p.offset === start.offset + i + 1 && p.epoch === start.epoch,
          );
        if (!consecutive || client.discontinuities > 0) {
          found.push({ user, channel, offsets: got.map((p) => p.offset) });
        }
      }
    }
    return found;
  }

  /** Closes the clients, then nginx and the nodes. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.clients.map((client) => client.client.close()));
    await this.nginx.stop("SIGTERM");
    for (const node of this.nodes) node.kill();
  }

  private async publish(channel: string, key: string) {
    let failure: unknown;
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        const response = await fetch(
          `http://127.0.0.1:${this.nginx.port}/api/publish`,
          {
            method: "POST",
            headers: {
              Authorization: `Bearer ${API_KEY}`,
              "Content-Type": "application/json",
            },
            body: JSON.stringify({ channel, data: { key }, key }),
            signal: AbortSignal.timeout(3_000),
          },
        );
        const text = await response.text();
        if (response.status === 200) {
          return JSON.parse(text) as { offset: number };
        }
        failure = new Error(`publish ${response.status}: ${text}`);
      } catch (error) {
        failure = error;
      }
      this.publishRetries += 1;
      await sleep(100);
    }
    throw new Error(`publish ${channel} ${key} failed: ${String(failure)}`);
  }
}

function nodeOptions(
  options: HerdOptions,
  index: number,
): Record<string, number | string> {
  return {
    apiKey: API_KEY,
    tokenSecret: TOKEN_SECRET,
    trustProxy: "127.0.0.1",
    nodeId: `n${index}`,
    ...options.node,
  };
}

/** nginx in front of `nodes`: a failed node is retried after 1 s. */
function proxyOptions(nodes: readonly NodeProcess[]) {
  return {
    proxyTimeout: 30_000,
    connectTimeout: 1_000,
    failTimeout: 1_000,
    // Two sockets a client; twice this stays under 20000 open files.
    workerConnections: 8_192,
    nodes: nodes.map((node) => `127.0.0.1:${node.port}`),
  };
}

/** One line of figures for the test log. */
export function report(what: string, figures: Record<string, unknown>): void {
  process.stdout.write(`${what}: ${JSON.stringify(figures)}\n`);
}

/** The bounds C16's Right line is checked against. */
export interface SpreadLimits {
  /** The clients' `reconnectSpreadMs`; attempts go in sixths of it. */
  readonly spreadMs: number;
  /** Attempts are counted over this long after the drop. */
  readonly windowMs: number;
  /** Every client that dropped is back and resubscribed within this. */
  readonly backWithinMs: number;
  /** No bucket holds this share of them or more. */
  readonly largestShare: number;
}

/**
 * Drops `victims()` with `drop` while every channel is published on,
 * and checks C16's Right line: the attempts spread, every client back
 * within the bound with `recovered: true`, nothing lost, nobody else
 * disturbed. Returns the figures it reported.
 */
export async function expectSpreadReconnects(
  herd: Herd,
  what: string,
  victims: () => HerdClient[],
  drop: () => Promise<number>,
  limits: SpreadLimits,
): Promise<Herding> {
  herd.startPublishing();
  await sleep(1_000);
  const dropped = victims();
  const bystanders = herd.clients.filter((c) => !dropped.includes(c));
  const cpu = new CpuSampler(herd.nodes.map((node) => node.pid));
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const at = await drop();
  // Waits past the bound, so a slow run still reports its figures.
  await herd.back(dropped, at, 3 * limits.backWithinMs);
  await herd.stopPublishing();
  await herd.delivered(10_000);
  // Every attempt of the window is counted, late ones included.
  await sleep(at + limits.windowMs - Date.now());
  lag.disable();
  cpu.stop();

  const bucketMs = limits.spreadMs / 6;
  const result = herding(dropped, at, bucketMs, limits.windowMs);
  report(what, {
    ...result,
    publishRetries: herd.publishRetries,
    // How late this process's timers fired: attempts move by as much.
    lagMsMax: Math.round(lag.max / 1e6),
    nodeCpuPeak: Number(cpu.peak.toFixed(2)),
  });
  expect(result.largestShare).toBeLessThan(limits.largestShare);
  expect(result.late).toBe(0);
  // First attempts: no spike but a spread, drawn below the spread's end.
  expect(result.firstBuckets.filter((n) => n > 0).length).toBeGreaterThan(4);
  expect(result.drawnMaxMs).toBeLessThan(limits.spreadMs);
  for (const count of result.drawnBuckets.slice(0, 6)) {
    expect(count / dropped.length).toBeGreaterThan(0.11);
    expect(count / dropped.length).toBeLessThan(limits.largestShare);
  }
  expect(result.backMs).toBeLessThan(limits.backWithinMs);
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
  expect(herd.gaps()).toEqual([]);
  return result;
}

/**
 * Waits until every client's connection has lasted `STABLE_CONNECTION_MS`:
 * one dropped sooner keeps its backoff doubling instead of drawing from
 * the spread again.
 */
export async function untilStable(herd: Herd): Promise<void> {
  // A subscribe reply comes after its connection's `connect` reply.
  const last = Math.max(
    ...herd.clients.map((c) =>
      Math.max(c.attempts.at(-1)!, c.lastResubscribe()),
    ),
  );
  await sleep(last + STABLE_CONNECTION_MS - Date.now());
}
