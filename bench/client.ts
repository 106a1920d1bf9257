/**
 * A client process of the bench: holds many connections to one system,
 * counts what each round delivers, keeps latencies, and tells the bench
 * when every local connection has a round. Each process stays well under
 * the open-file limit; the bench starts as many as it needs.
 */
import { Histogram } from "./histogram.js";
import { notify, serve } from "./ipc.js";
import {
  OPENERS,
  type ClientConnection,
  type Target,
} from "./client-protocols.js";

const now = () => performance.timeOrigin + performance.now();

interface Peer {
  connection?: ClientConnection;
  /** Highest round seen; rounds arrive in order per channel. */
  last: number;
  /** Distinct rounds seen. */
  seen: number;
  recovered?: boolean;
}

const peers: Peer[] = [];
const perRound = new Map<number, number>();
let latencies = new Histogram();
let delivered = 0;
let duplicates = 0;
let closes = 0;
let failed = 0;

function track(peer: Peer) {
  return {
    message(seq: number, sentAt: number) {
      if (seq <= peer.last) {
        duplicates += 1;
        return;
      }
      peer.last = seq;
      peer.seen += 1;
      delivered += 1;
      latencies.add(now() - sentAt);
      const count = (perRound.get(seq) ?? 0) + 1;
      if (count === peers.length) {
        perRound.delete(seq);
        notify({ notice: "round", seq });
      } else {
        perRound.set(seq, count);
      }
    },
    closed() {
      closes += 1;
    },
    resumed(recovered: boolean) {
      peer.recovered = recovered;
    },
  };
}

async function connect(request: Record<string, unknown>) {
  const open = OPENERS[request.system as string];
  if (!open) throw new Error(`unknown system "${request.system}"`);
  const ports = request.ports as number[];
  const count = request.count as number;
  const batch = request.batch as number;
  const first = request.first as number;
  const channels = request.channels as number;
  const started = now();

  for (let i = 0; i < count; i += batch) {
    const size = Math.min(batch, count - i);
    await Promise.all(
      Array.from({ length: size }, async (_, k) => {
        const index = first + i + k;
        const target: Target = {
          port: ports[index % ports.length]!,
          channel: `${request.prefix}${index % channels}`,
          token: request.token as string,
          fallbackPort: request.fallbackPort as number | undefined,
        };
        const peer: Peer = { last: -1, seen: 0 };
        try {
          peer.connection = await open(target, track(peer));
          peers.push(peer);
        } catch (error) {
          if (failed === 0) process.stderr.write(`first failure: ${error}\n`);
          failed += 1;
        }
      }),
    );
  }
  return { connected: peers.length, failed, ms: now() - started };
}

serve({
  connect,
  reset: () => {
    latencies = new Histogram();
    perRound.clear();
    delivered = 0;
    duplicates = 0;
    closes = 0;
  },
  counts: () => ({ delivered, duplicates, closes, failed }),
  latencies: () => latencies.counts,
  /** Connections that are back, recovered, with `rounds` rounds each. */
  recovery: (request) => {
    const rounds = request.rounds as number;
    let done = 0;
    let refused = 0;
    for (const peer of peers) {
      if (peer.recovered === false) refused += 1;
      else if (peer.recovered && peer.seen >= rounds) done += 1;
    }
    return { done, refused, total: peers.length };
  },
  close: () => {
    for (const peer of peers) peer.connection?.close();
    peers.length = 0;
  },
});
