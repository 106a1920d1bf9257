/**
 * The processes of one measurement: server processes of a system, client
 * processes that hold its connections, and a redis-server of the run's
 * own. Everything started here is ended by `stopAll`.
 */
import type { ChildProcess } from "node:child_process";

import {
  spawnOnFreePort,
  stopChild,
} from "../packages/server/test/redis-server.js";

import { Histogram } from "./histogram.js";
import { Child } from "./ipc.js";
import type { ServerSettings } from "./servers/host.js";
import { mintToken } from "./token.js";

/** The systems compared, Switchboard first. */
export const SYSTEMS = ["switchboard", "socket.io", "ws", "ws-coalesced"];
export type SystemName = (typeof SYSTEMS)[number];

/** Connections per client process, well under 20000 open files. */
const PER_CLIENT_PROCESS = 5000;
/** Connections a client process opens at once while connecting. */
const CONNECT_BATCH = 250;
/** Unsent bytes per connection before a close: Switchboard's default. */
export const OUTBOUND_LIMIT = 1024 * 1024;
const SECRET = "bench-secret-of-at-least-32-bytes!";

const SCRIPTS: Record<SystemName, [string, string[]]> = {
  switchboard: ["servers/switchboard.ts", []],
  "socket.io": ["servers/socketio.ts", []],
  ws: ["servers/ws.ts", []],
  "ws-coalesced": ["servers/ws.ts", ["coalesced"]],
};

const running = new Set<Child>();
let profileDir: string | undefined;

/** Writes a CPU profile of every server process into `dir` from now on. */
export function profileServers(dir: string): void {
  profileDir = dir;
}
const redises = new Set<ChildProcess>();

/** A reading of a server process. */
export interface ServerStats {
  /** CPU time so far, ms. */
  readonly cpu: number;
  readonly rss: number;
  readonly heap: number;
  readonly connections: number;
  readonly slowCloses: number;
}

/** One server process of a system. */
export class Server {
  constructor(
    readonly child: Child,
    readonly port: number,
  ) {}

  /** CPU and memory; with `gc`, after two full collections. */
  stats(gc = false): Promise<ServerStats> {
    return this.child.request<ServerStats>({ type: "stats", gc });
  }

  /** Publishes round `seq` to channels `prefix`0 to `prefix`(count-1). */
  round(seq: number, prefix: string, count: number): void {
    this.child.tell({ type: "round", seq, prefix, count });
  }

  /** Kills the process at once, as a crash would. */
  kill(): Promise<void> {
    running.delete(this.child);
    return this.child.stop("SIGKILL");
  }
}

/** Starts a server process of `system`. */
export async function startServer(
  system: SystemName,
  options: { redisUrl?: string; recovery?: boolean } = {},
): Promise<Server> {
  const [script, args] = SCRIPTS[system]!;
  const settings: ServerSettings = {
    secret: SECRET,
    outboundLimit: OUTBOUND_LIMIT,
    ...options,
  };
  const flags = profileDir
    ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`]
    : [];
  const child = Child.start(
    system,
    script,
    [JSON.stringify(settings), ...args],
    flags,
  );
  running.add(child);
  const port = await child.request<number>({ type: "port" });
  return new Server(child, port);
}

/** Counts of all client processes together. */
export interface ClientCounts {
  readonly delivered: number;
  readonly duplicates: number;
  readonly closes: number;
  readonly failed: number;
}

/** The client processes holding one system's connections. */
export class Clients {
  private readonly waiters = new Map<number, () => void>();
  private readonly reports = new Map<number, number>();
  private connected = 0;

  private constructor(
    readonly system: SystemName,
    private readonly children: Child[],
    private readonly token: string,
  ) {
    for (const child of children) {
      child.onNotice((notice) => {
        if (notice.notice === "round") this.roundReported(notice.seq as number);
      });
    }
  }

  /** Starts enough client processes for `connections` connections. */
  static async start(
    system: SystemName,
    connections: number,
  ): Promise<Clients> {
    const count = Math.max(1, Math.ceil(connections / PER_CLIENT_PROCESS));
    const children = Array.from({ length: count }, (_, i) => {
      const child = Child.start(`${system} clients ${i + 1}`, "client.ts");
      running.add(child);
      return child;
    });
    return new Clients(system, children, await mintToken(SECRET, "bench"));
  }

  /** Connections open so far. */
  get size(): number {
    return this.connected;
  }

  /**
   * Opens `count` more connections spread over the processes, to `ports`
   * in turn, connection i joining channel `prefix`(i mod channels).
   */
  async connect(options: {
    ports: number[];
    count: number;
    prefix: string;
    channels: number;
    fallbackPort?: number;
  }): Promise<{ failed: number }> {
    const share = Math.ceil(options.count / this.children.length);
    const replies = await Promise.all(
      this.children.map((child, i) => {
        const count = Math.max(0, Math.min(share, options.count - i * share));
        return child.request<{ connected: number; failed: number }>({
          type: "connect",
          system: this.system,
          ports: options.ports,
          prefix: options.prefix,
          channels: options.channels,
          fallbackPort: options.fallbackPort,
          first: this.connected + i * share,
          count,
          batch: CONNECT_BATCH,
          token: this.token,
        });
      }),
    );
    this.connected = replies.reduce((sum, r) => sum + r.connected, 0);
    return { failed: replies.reduce((sum, r) => sum + r.failed, 0) };
  }

  private roundReported(seq: number): void {
    const count = (this.reports.get(seq) ?? 0) + 1;
    if (count < this.children.length) {
      this.reports.set(seq, count);
      return;
    }
    this.reports.delete(seq);
    this.waiters.get(seq)?.();
    this.waiters.delete(seq);
  }

  /** Resolves once every connection has round `seq`. */
  roundDone(seq: number): Promise<void> {
    return new Promise((resolve) => this.waiters.set(seq, resolve));
  }

  /** Forgets counts and latencies, before a measured phase. */
  async reset(): Promise<void> {
    this.reports.clear();
    this.waiters.clear();
    await Promise.all(this.children.map((c) => c.request({ type: "reset" })));
  }

  async counts(): Promise<ClientCounts> {
    const all = await Promise.all(
      this.children.map((c) => c.request<ClientCounts>({ type: "counts" })),
    );
    return {
      delivered: sum(all.map((c) => c.delivered)),
      duplicates: sum(all.map((c) => c.duplicates)),
      closes: sum(all.map((c) => c.closes)),
      failed: sum(all.map((c) => c.failed)),
    };
  }

  async latencies(): Promise<Histogram> {
    const merged = new Histogram();
    for (const child of this.children) {
      const counts = await child.request<number[]>({ type: "latencies" });
      merged.merge(new Histogram(counts));
    }
    return merged;
  }

  /** How many connections are back and recovered with `rounds` rounds. */
  async recovery(
    rounds: number,
  ): Promise<{ done: number; refused: number; total: number }> {
    const all = await Promise.all(
      this.children.map((c) =>
        c.request<{ done: number; refused: number; total: number }>({
          type: "recovery",
          rounds,
        }),
      ),
    );
    return {
      done: sum(all.map((r) => r.done)),
      refused: sum(all.map((r) => r.refused)),
      total: sum(all.map((r) => r.total)),
    };
  }
}

function sum(values: number[]): number {
  return values.reduce((total, n) => total + n, 0);
}

/** Starts a redis-server of the run's own; resolves with its URL. */
export async function startRedis(): Promise<string> {
  // Known from its spawn, not from its readiness: a signal while it
  // starts stops it too.
  const { port } = await spawnOnFreePort(undefined, [], (child) =>
    redises.add(child),
  );
  return `redis://127.0.0.1:${port}`;
}

/** Ends every process started for a measurement, clients first. */
export async function stopAll(): Promise<void> {
  const children = [...running].reverse();
  running.clear();
  await Promise.all(children.map((child) => child.stop()));
  const stopped = [...redises].map(stopChild);
  redises.clear();
  await Promise.all(stopped);
}
