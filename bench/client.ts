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

/** Rounds below a connection's highest that it still tells apart. */
const WINDOW = 31;

interface Peer {
  connection?: ClientConnection;
  /**
   * Highest round seen. Rounds published on two nodes may arrive out of
   * order, so `window` keeps a bit for each of the rounds below it.
   */
  last: number;
  window: number;
  /** Distinct rounds seen. */
  seen: number;
  recovered?: boolean;
}

/** Marks `seq` seen by `peer`; false when it was seen before. */
function firstSight(peer: Peer, seq: number): boolean {
  if (seq > peer.last) {
    const shift = seq - peer.last;
    peer.window = shift > WINDOW ? 1 : ((peer.window << shift) | 1) >>> 0;
    peer.window &= 0x7fffffff;
    peer.last = seq;
    return true;
  }
  const bit = peer.last - seq;
  if (bit >= WINDOW) return true;
  if (peer.window & (1 << bit)) return false;
  peer.window |= 1 << bit;
  return true;
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
      if (!firstSight(peer, seq)) {
        duplicates += 1;
        return;
      }
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
        const peer: Peer = { last: -1, window: 0, seen: 0 };
        try {
          peer.connection = await open(target, track(peer));
          peers.push(peer);
        } catch (error) {
          // One line a process says why; the count goes in the loss.
          if (failed === 0) {
            process.stderr.write(`${request.system} client: ${error}\n`);
          }
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
