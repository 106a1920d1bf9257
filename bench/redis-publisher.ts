/**
 * RedisPublisher in the three fleet layouts, on Redis servers of the run's
 * own: one server, two named shards, and a Redis Cluster of three
 * masters. Per layout: the latency of publishes one at a time, and the
 * rate of publishes with several in flight, on 100 channels.
 *
 *   npm run bench:redis-publisher -- [--count 2000] [--in-flight 50]
 */
import { parseArgs } from "node:util";

import { RedisPublisher } from "../packages/server-sdk/src/redis.js";
import { startCluster } from "../packages/server/test/redis-cluster.js";
import { startRedis } from "../packages/server/test/redis-server.js";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "2000" },
    "in-flight": { type: "string", default: "50" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(
    "Usage: npm run bench:redis-publisher -- [--count 2000] [--in-flight 50]\n",
  );
  process.exit(0);
}
const count = Number(values.count);
const inFlight = Number(values["in-flight"]);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function measure(layout: string, url: string): Promise<void> {
  const publisher = new RedisPublisher({ url });
  try {
    // Connects, detects the layout and loads the script everywhere.
    for (let i = 0; i < 100; i++) await publisher.publish(`warm:${i}`, i);
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await publisher.publish(`bench:${i % 100}`, { i });
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) {
          const i = next++;
          await publisher.publish(`bench:${i % 100}`, { i });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(
      `${JSON.stringify({
        layout,
        p50Ms: Number(percentile(latencies, 0.5).toFixed(3)),
        p99Ms: Number(percentile(latencies, 0.99).toFixed(3)),
        publishesPerSecond: Math.round(count / seconds),
        inFlight,
      })}\n`,
    );
  } finally {
    await publisher.close();
  }
}

const [a, b] = await Promise.all([startRedis(), startRedis()]);
const cluster = await startCluster(3, 0);
try {
  await measure("one server", a.url);
  await measure("two named shards", `a=${a.url},b=${b.url}`);
  await measure("cluster of 3 masters", cluster.url);
} finally {
  await Promise.all([a.stop(), b.stop(), cluster.stop()]);
}
