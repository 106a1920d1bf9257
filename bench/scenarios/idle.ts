/**
 * Idle: memory per connection on one node, each connection through the
 * full handshake and in one of 100 channels. The node's RSS and heap are
 * read after two full collections, before any client and at each size.
 */
import { Clients, SYSTEMS, startServer } from "../fleet.js";
import { sizes, type Scenario } from "../scenario.js";

const CHANNELS = 100;

export const idle: Scenario = {
  name: "idle",
  metric: "server RSS per idle connection, KiB, at the largest size",
  better: "lower",
  systems: SYSTEMS,
  async measure(system, options, progress) {
    const steps = sizes(options, [1000, 5000, 15000], [500, 2000]);
    const server = await startServer(system);
    const clients = await Clients.start(system, steps[steps.length - 1]!);
    const base = await server.stats(true);
    const details: Record<string, number> = {};
    let value = 0;
    let loss = 0;

    for (const [i, size] of steps.entries()) {
      progress(i / steps.length, `connecting ${size}`);
      const { failed } = await clients.connect({
        ports: [server.port],
        count: size - clients.size,
        prefix: "bench:i",
        channels: CHANNELS,
      });
      loss += failed;
      const stats = await server.stats(true);
      value = (stats.rss - base.rss) / 1024 / size;
      details[`RSS KiB/conn at ${size}`] = value;
      details[`heap KiB/conn at ${size}`] =
        (stats.heap - base.heap) / 1024 / size;
    }
    return { value, loss, details };
  },
};
