/**
 * What every server process of the bench shares: its settings from the
 * command line, and the requests the bench sends it (CPU and memory
 * readings, publishing rounds), whatever system it runs.
 */
import { serve } from "../ipc.js";

/** Settings of a server process, passed as JSON in its first argument. */
export interface ServerSettings {
  /** HS256 secret of the handshake's token check. */
  readonly secret: string;
  /** Bytes a connection may have queued before it is closed as slow. */
  readonly outboundLimit: number;
  /** Redis URL for the cross-node and recovery scenarios. */
  readonly redisUrl?: string;
  /** The redis-streams adapter and connection state recovery (Socket.IO). */
  readonly recovery?: boolean;
}

/** What a system offers the host once it listens. */
export interface System {
  readonly port: number;
  /** Publishes `data` to every subscriber of `channel`, on every node. */
  publish(channel: string, data: Publication): void | Promise<unknown>;
  /** Connections open now. */
  connections(): number;
  /** Connections closed for exceeding the outbound limit. */
  slowCloses(): number | Promise<number>;
}

/** The payload of each publication: 100 bytes of JSON. */
export interface Publication {
  /** Round number. */
  readonly s: number;
  /** Time of publishing, ms since the epoch with sub-ms precision. */
  readonly t: number;
  readonly p: string;
}

/** Time in ms, comparable across processes. */
export const now = () => performance.timeOrigin + performance.now();

const PAYLOAD_BYTES = 100;

function publication(seq: number): Publication {
  const t = now();
  const bare = JSON.stringify({ s: seq, t, p: "" }).length;
  return { s: seq, t, p: "x".repeat(Math.max(0, PAYLOAD_BYTES - bare)) };
}

/** Reads the settings a server process was started with. */
export function settings(): ServerSettings {
  return JSON.parse(process.argv[2] ?? "{}") as ServerSettings;
}

/** The process's CPU time in ms, user plus system. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Serves the bench's requests for `system` and reports its port. A round
 * publishes one message to each of `count` channels named `prefix` + i.
 */
export function host(system: System): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  // A normal exit, so that --cpu-prof writes its profile.
  process.on("SIGTERM", () => process.exit(0));
  serve({
    port: () => system.port,
    stats: async (request) => {
      if (request.gc && collect) {
        collect();
        collect();
      }
      const memory = process.memoryUsage();
      return {
        cpu: cpuMs(),
        rss: memory.rss,
        heap: memory.heapUsed,
        connections: system.connections(),
        slowCloses: await system.slowCloses(),
      };
    },
    round: (request) => {
      const seq = request.seq as number;
      const prefix = request.prefix as string;
      const count = request.count as number;
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < count; i++) {
        const sent = system.publish(`${prefix}${i}`, publication(seq));
        if (sent) pending.push(sent);
      }
      return Promise.all(pending).then(() => null);
    },
  });
}
