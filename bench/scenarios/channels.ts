/**
 * Many channels: 5000 channels with 2 subscribers each; each round
 * publishes one message to every channel, two rounds in flight.
 */
import { Clients, SYSTEMS, startServer } from "../fleet.js";
import { closedLoop } from "../rounds.js";
import { sizes, type Scenario } from "../scenario.js";

const SUBSCRIBERS_PER_CHANNEL = 2;
const IN_FLIGHT = 2;
const WARMUP_ROUNDS = 2;

export const channels: Scenario = {
  name: "channels",
  metric: "deliveries per server CPU-second, 2 subscribers per channel",
  better: "higher",
  systems: SYSTEMS,
  async measure(system, options, progress) {
    const [connections] = sizes(options, [10000], [1000]);
    const count = Math.max(
      1,
      Math.floor(connections! / SUBSCRIBERS_PER_CHANNEL),
    );
    const size = count * SUBSCRIBERS_PER_CHANNEL;
    const server = await startServer(system);
    const clients = await Clients.start(system, size);
    const audience = {
      servers: [server],
      clients,
      prefix: "bench:c",
      channels: count,
    };

    progress(0, `connecting ${size} to ${count} channels`);
    const { failed } = await clients.connect({
      ports: [server.port],
      count: size,
      prefix: "bench:c",
      channels: count,
    });
    await closedLoop(audience, {
      inFlight: IN_FLIGHT,
      seconds: options.seconds,
      first: 0,
      rounds: WARMUP_ROUNDS,
    });

    progress(0.5, `publishing to ${count} channels`);
    await clients.reset();
    const before = await server.stats();
    const run = await closedLoop(audience, {
      inFlight: IN_FLIGHT,
      seconds: options.seconds,
      first: 1000,
    });
    const after = await server.stats();
    const counts = await clients.counts();
    const value = counts.delivered / ((after.cpu - before.cpu) / 1000);
    return {
      value,
      loss: failed + run.published * size - counts.delivered + counts.closes,
      details: { channels: count, "rounds published": run.published },
    };
  },
};
