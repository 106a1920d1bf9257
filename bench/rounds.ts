/**
 * Publishing rounds and waiting for them. A round is one message to each
 * channel of a set, so every connection gets exactly one message a round.
 */
import type { Clients, Server } from "./fleet.js";

/** How long a round may go without arriving before it counts as lost. */
const STALL_MS = 5000;

const now = () => performance.now();

function within(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Where rounds go. */
export interface Audience {
  readonly servers: Server[];
  readonly clients: Clients;
  readonly prefix: string;
  readonly channels: number;
}

/**
 * Publishes rounds for `seconds` (or `rounds` of them), keeping `inFlight`
 * outstanding: 1 waits for each round before the next. Rounds are
 * numbered from `first` and go to the servers in turn. Returns the rounds
 * published and whether one stalled (a loss).
 */
export async function closedLoop(
  audience: Audience,
  options: {
    inFlight: number;
    seconds: number;
    first: number;
    rounds?: number;
  },
): Promise<{ published: number; stalled: boolean }> {
  const { servers, clients, prefix, channels } = audience;
  const deadline = now() + options.seconds * 1000;
  const last = options.first + (options.rounds ?? Infinity);
  let seq = options.first;
  let stalled = false;

  const lane = async () => {
    while (now() < deadline && seq < last && !stalled) {
      const round = seq++;
      const done = clients.roundDone(round);
      servers[round % servers.length]!.round(round, prefix, channels);
      if (!(await within(done, STALL_MS))) stalled = true;
    }
  };
  await Promise.all(Array.from({ length: options.inFlight }, lane));
  return { published: seq - options.first, stalled };
}

/**
 * Publishes `rate` rounds a second for `seconds`, whatever arrives, then
 * waits until every round has arrived or one stalls.
 */
export async function openLoop(
  audience: Audience,
  options: { rate: number; seconds: number; first: number },
): Promise<{ published: number; stalled: boolean }> {
  const { servers, clients, prefix, channels } = audience;
  const total = Math.max(1, Math.round(options.rate * options.seconds));
  const started = now();
  const arrivals: Promise<void>[] = [];
  for (let n = 0; n < total; n++) {
    const wait = started + (n * 1000) / options.rate - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const round = options.first + n;
    arrivals.push(clients.roundDone(round));
    servers[round % servers.length]!.round(round, prefix, channels);
  }
  const all = Promise.all(arrivals).then(() => undefined);
  const stalled = !(await within(all, STALL_MS));
  return { published: total, stalled };
}
