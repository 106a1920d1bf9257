/**
 * Connect storm: clients connect in batches, each passing the HS256
 * token check and joining one channel, as fast as the node lets them.
 * The figure is handshakes per second of server CPU; the time until all
 * are in is a detail.
 */
import { Clients, SYSTEMS, startServer } from "../fleet.js";
import { sizes, type Scenario } from "../scenario.js";

const CHANNELS = 100;

export const connectStorm: Scenario = {
  name: "connect-storm",
  metric: "handshakes (upgrade, token check, join) per server CPU-second",
  better: "higher",
  systems: SYSTEMS,
  async measure(system, options, progress) {
    const [size] = sizes(options, [15000], [2000]);
    const server = await startServer(system);
    const clients = await Clients.start(system, size!);

    progress(0, `connecting ${size}`);
    const before = await server.stats();
    const started = performance.now();
    const { failed } = await clients.connect({
      ports: [server.port],
      count: size!,
      prefix: "bench:s",
      channels: CHANNELS,
    });
    const seconds = (performance.now() - started) / 1000;
    const after = await server.stats();
    const joined = size! - failed;
    return {
      value: joined / ((after.cpu - before.cpu) / 1000),
      loss: failed,
      details: {
        "seconds until all in": seconds,
        "server CPU-seconds": (after.cpu - before.cpu) / 1000,
      },
    };
  },
};
