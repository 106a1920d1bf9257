/**
 * Cross-node publish-to-receive latency: two nodes with the redis engine
 * share a Redis of the run's own; subscribers are split over both nodes;
 * messages are published at a fixed rate through the HTTP API of both.
 * Prints delivered vs expected and p50/p99/p999 latency per scenario.
 *
 *   npm run bench:cross-node -- [--seconds 20]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { parseArgs } from "node:util";

import WebSocket from "ws";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "20" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write("Usage: npm run bench:cross-node -- [--seconds 20]\n");
  process.exit(0);
}
const seconds = Number(values.seconds);

/** Each scenario: subscribers in all, messages a second. */
const SCENARIOS = [
  { subscribers: 1000, rate: 100 },
  { subscribers: 100, rate: 1000 },
];

const CLI = new URL("../packages/cli/bin/switchboard.js", import.meta.url)
  .pathname;
const children: ChildProcess[] = [];
const now = () => performance.timeOrigin + performance.now();

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Spawns a process and resolves once its output contains `ready`. */
function launch(command: string, args: string[], ready: string) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  return new Promise<void>((resolve, reject) => {
    let output = "";
    child.once("exit", (code) => reject(new Error(`${command}: ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk;
      if (output.includes(ready)) resolve();
    });
    child.stderr!.resume();
  });
}

async function startFleet(): Promise<number[]> {
  const redisPort = await freePort();
  await launch(
    "redis-server",
    ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", ""],
    "Ready to accept connections",
  );
  const ports = [await freePort(), await freePort()];
  for (const port of ports) {
    await launch(
      process.execPath,
      [
        CLI,
        "start",
        "--engine",
        "redis",
        "--redis-url",
        `redis://127.0.0.1:${redisPort}`,
        "--port",
        String(port),
        "--log-level",
        "error",
      ],
      "listening on",
    );
  }
  return ports;
}

function subscribe(port: number, channel: string, latencies: number[]) {
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, "switchboard.v1");
    ws.on("error", reject);
    ws.on("open", () => {
      ws.send('{"type":"connect","id":1}');
      ws.send(JSON.stringify({ type: "subscribe", id: 2, channel }));
    });
    ws.on("message", (raw: Buffer) => {
      const frame = JSON.parse(raw.toString());
      if (frame.id === 2) resolve(ws);
      else if (frame.type === "message") {
        latencies.push(now() - frame.data.t);
      }
    });
  });
}

async function run(ports: number[], subscribers: number, rate: number) {
  const channel = `bench:${subscribers}x${rate}`;
  const latencies: number[] = [];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < subscribers; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, subscribers - i) },
      (_, k) => subscribe(ports[(i + k) % ports.length]!, channel, latencies),
    );
    sockets.push(...(await Promise.all(batch)));
  }

  const total = rate * seconds;
  const started = now();
  const inFlight = new Set<Promise<unknown>>();
  for (let n = 0; n < total; n++) {
    const wait = started + (n * 1000) / rate - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const port = ports[n % ports.length]!;
    const request = fetch(`http://127.0.0.1:${port}/api/publish`, {
      method: "POST",
      body: JSON.stringify({ channel, data: { t: now(), n } }),
    }).then((response) => response.arrayBuffer());
    inFlight.add(request);
    void request.finally(() => inFlight.delete(request));
  }
  await Promise.all(inFlight);
  const expected = total * subscribers;
  const settle = now() + 5000;
  while (latencies.length < expected && now() < settle) {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const ws of sockets) ws.terminate();

  latencies.sort((a, b) => a - b);
  const at = (p: number) =>
    latencies[
      Math.min(latencies.length - 1, Math.floor(latencies.length * p))
    ]!;
  process.stdout.write(
    `${subscribers} subscribers, ${rate}/s for ${seconds} s: ` +
      `delivered ${latencies.length} of ${expected}, ` +
      `p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms, ` +
      `p999 ${at(0.999).toFixed(2)} ms\n`,
  );
  return latencies.length === expected;
}

let ok = true;
try {
  const ports = await startFleet();
  for (const { subscribers, rate } of SCENARIOS) {
    ok = (await run(ports, subscribers, rate)) && ok;
  }
} finally {
  for (const child of children) child.kill("SIGTERM");
}
process.exit(ok ? 0 : 1);
