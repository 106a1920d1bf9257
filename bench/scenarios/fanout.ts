/**
 * Fan-out: one channel, its subscribers growing from the smaller size to
 * the larger, 100-byte messages published one at a time or in bursts.
 * The figure is deliveries per second of server CPU at the larger size.
 */
import { Clients, SYSTEMS, startServer, type SystemName } from "../fleet.js";
import { closedLoop } from "../rounds.js";
import {
  sizes,
  type Progress,
  type RunOptions,
  type Sample,
  type Scenario,
} from "../scenario.js";

/** Rounds before each measured phase, so every system runs warm. */
const WARMUP_ROUNDS = 16;

async function measure(
  system: SystemName,
  options: RunOptions,
  progress: Progress,
  inFlight: number,
): Promise<Sample> {
  const steps = sizes(options, [1000, 10000], [500, 2000]);
  const largest = steps[steps.length - 1]!;
  const server = await startServer(system);
  const clients = await Clients.start(system, largest);
  const audience = {
    servers: [server],
    clients,
    prefix: "bench:f",
    channels: 1,
  };
  const details: Record<string, number> = {};
  let value = 0;
  let loss = 0;
  let seq = 0;

  for (const [i, size] of steps.entries()) {
    progress(i / steps.length, `connecting ${size}`);
    const { failed } = await clients.connect({
      ports: [server.port],
      count: size - clients.size,
      prefix: "bench:f",
      channels: 1,
    });
    loss += failed;
    await closedLoop(audience, {
      inFlight,
      seconds: options.seconds,
      first: seq,
      rounds: WARMUP_ROUNDS,
    });
    seq += 1_000_000;

    progress((i + 0.5) / steps.length, `publishing to ${size}`);
    await clients.reset();
    const before = await server.stats();
    const run = await closedLoop(audience, {
      inFlight,
      seconds: options.seconds,
      first: seq,
    });
    const after = await server.stats();
    const counts = await clients.counts();
    seq += 1_000_000;

    const expected = run.published * size;
    loss += expected - counts.delivered + counts.closes;
    value = counts.delivered / ((after.cpu - before.cpu) / 1000);
    details[`deliveries/CPU-s at ${size}`] = value;
  }
  return { value, loss, details };
}

/** Fan-out with 8 messages in flight. */
export const fanoutBurst: Scenario = {
  name: "fanout-burst",
  metric:
    "deliveries per server CPU-second, one channel, 10k subscribers" +
    " (2k with --quick), 8 in flight",
  better: "higher",
  systems: SYSTEMS,
  measure: (system, options, progress) => measure(system, options, progress, 8),
};

/** Fan-out waiting for each message to arrive before the next. */
export const fanoutSingle: Scenario = {
  name: "fanout-single",
  metric:
    "deliveries per server CPU-second, one channel, 10k subscribers" +
    " (2k with --quick), 1 in flight",
  better: "higher",
  systems: SYSTEMS,
  measure: (system, options, progress) => measure(system, options, progress, 1),
};
