/**
 * Switchboard from this repository: one node, the memory engine, or the
 * redis engine when the bench gives a Redis URL.
 */
import { createNode } from "@switchboard/server";

import { host, settings } from "./host.js";

const config = settings();
const node = createNode({
  port: 0,
  host: "127.0.0.1",
  tokenSecret: config.secret,
  engine: config.redisUrl ? "redis" : "memory",
  redisUrl: config.redisUrl,
  outboundBufferLimit: config.outboundLimit,
});
const { port } = await node.listen();
const slowCounter = node.metrics.slowConsumers;

host({
  port,
  publish: (channel, data) => node.publish(channel, { ...data }),
  connections: () => node.connectionCount,
  slowCloses: async () => (await slowCounter.get()).values[0]?.value ?? 0,
});
