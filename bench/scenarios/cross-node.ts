/**
 * Cross-node: two nodes of a system share a Redis of the run's own; the
 * subscribers of one channel are split over both, and messages are
 * published on both in turn at a fixed rate. The figure is the p99 of
 * publish-to-receive latency at that rate; then the rate doubles while
 * nothing is lost, for the highest rate with no loss.
 */
import { Clients, SYSTEMS, startRedis, startServer } from "../fleet.js";
import { closedLoop, openLoop } from "../rounds.js";
import { sizes, type Scenario } from "../scenario.js";

/** Messages a second of the headline latency. */
const RATE = 100;
/** The rates tried after it, in turn, while none loses a message. */
const LADDER = [200, 400, 800, 1600, 3200];
/** Seconds of each rate of the ladder. */
const LADDER_SECONDS = 1.5;

export const crossNode: Scenario = {
  name: "cross-node",
  metric: `publish-to-receive p99, ms, 2 nodes and Redis, ${RATE} msg/s`,
  better: "lower",
  systems: SYSTEMS,
  async measure(system, options, progress) {
    const [size] = sizes(options, [1000], [200]);
    const redisUrl = await startRedis();
    const servers = [
      await startServer(system, { redisUrl }),
      await startServer(system, { redisUrl }),
    ];
    const clients = await Clients.start(system, size!);
    const audience = { servers, clients, prefix: "bench:x", channels: 1 };

    progress(0, `connecting ${size} over 2 nodes`);
    const { failed } = await clients.connect({
      ports: servers.map((s) => s.port),
      count: size!,
      prefix: "bench:x",
      channels: 1,
    });
    let seq = 0;
    await closedLoop(audience, {
      inFlight: 1,
      seconds: options.seconds,
      first: seq,
      rounds: 20,
    });
    seq += 1_000_000;

    progress(0.2, `${RATE} msg/s`);
    await clients.reset();
    const run = await openLoop(audience, {
      rate: RATE,
      seconds: options.seconds,
      first: seq,
    });
    seq += 1_000_000;
    const latencies = await clients.latencies();
    const counts = await clients.counts();
    const loss =
      failed + run.published * size! - counts.delivered + counts.closes;

    let highest = loss === 0 ? RATE : 0;
    for (const [i, rate] of LADDER.entries()) {
      if (highest === 0) break;
      progress(0.4 + (0.6 * i) / LADDER.length, `${rate} msg/s`);
      await clients.reset();
      const step = await openLoop(audience, {
        rate,
        seconds: Math.min(options.seconds, LADDER_SECONDS),
        first: seq,
      });
      seq += 1_000_000;
      const reached = await clients.counts();
      const lost = step.published * size! - reached.delivered + reached.closes;
      if (step.stalled || lost > 0) break;
      highest = rate;
    }

    return {
      value: latencies.quantile(0.99),
      loss,
      details: {
        "p50 ms": latencies.quantile(0.5),
        "p99 ms": latencies.quantile(0.99),
        "p999 ms": latencies.quantile(0.999),
        "highest msg/s with no loss": highest,
      },
    };
  },
};
