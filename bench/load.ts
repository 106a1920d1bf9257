/**
 * The main job on real input: many WebSocket clients on many channels while
 * messages are published over HTTP at a steady rate. Prints messages
 * expected and delivered, publish-to-receive latency and the node's RSS.
 *
 *   npm start                    # in one terminal
 *   npm run bench:load           # in another; --help for the knobs
 */
import { parseArgs } from "node:util";

import WebSocket from "ws";

const { values } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8080" },
    clients: { type: "string", default: "5000" },
    channels: { type: "string", default: "50" },
    rate: { type: "string", default: "100" },
    seconds: { type: "string", default: "60" },
    "api-key": { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(
    "Usage: npm run bench:load -- [--url http://127.0.0.1:8080]\n" +
      "  [--clients 5000] [--channels 50] [--rate 100] [--seconds 60]\n" +
      "  [--api-key KEY]\n",
  );
  process.exit(0);
}

const base = new URL(values.url);
const clients = Number(values.clients);
const channelCount = Number(values.channels);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const wsUrl = `ws://${base.host}/ws`;
const headers: Record<string, string> = {
  "Content-Type": "application/json",
};
if (values["api-key"]) headers.Authorization = `Bearer ${values["api-key"]}`;

/** Time in ms with sub-ms precision, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

const subscribers = new Array<number>(channelCount).fill(0);
const latencies: number[] = [];
let delivered = 0;
let closed = 0;

function connectOne(index: number): Promise<WebSocket> {
  const channel = index % channelCount;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, "switchboard.v1");
    ws.on("error", reject);
    ws.on("open", () => {
      ws.send('{"type":"connect","id":1}');
      ws.send(`{"type":"subscribe","id":2,"channel":"load:${channel}"}`);
    });
    ws.on("message", (raw: Buffer) => {
      const frame = JSON.parse(raw.toString());
      if (frame.type === "ok" && frame.id === 2) {
        subscribers[channel]! += 1;
        resolve(ws);
      } else if (frame.type === "message") {
        delivered += 1;
        latencies.push(now() - frame.data.t);
      } else if (frame.type === "error") {
        reject(new Error(frame.message));
      }
    });
    ws.on("close", () => (closed += 1));
  });
}

async function connectAll(): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  const batch = 250;
  for (let i = 0; i < clients; i += batch) {
    const size = Math.min(batch, clients - i);
    const group = Array.from({ length: size }, (_, k) => connectOne(i + k));
    sockets.push(...(await Promise.all(group)));
  }
  return sockets;
}

async function publishFor(): Promise<number> {
  let expected = 0;
  let sent = 0;
  const total = rate * seconds;
  const started = now();
  const inFlight = new Set<Promise<void>>();
  while (sent < total) {
    const due = started + (sent * 1000) / rate;
    const wait = due - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const channel = sent % channelCount;
    expected += subscribers[channel]!;
    const body = JSON.stringify({
      channel: `load:${channel}`,
      data: { t: now(), n: sent },
    });
    const request = fetch(new URL("/api/publish", base), {
      method: "POST",
      headers,
      body,
    }).then(async (response) => {
      if (!response.ok) throw new Error(`publish ${response.status}`);
      await response.arrayBuffer();
    });
    const tracked = request.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    sent += 1;
  }
  await Promise.all(inFlight);
  return expected;
}

async function nodeRss(): Promise<number> {
  const response = await fetch(new URL("/metrics", base), { headers });
  const text = await response.text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith("process_resident_memory_bytes"));
  return Number(line?.split(" ")[1] ?? NaN);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

const rssBefore = await nodeRss();
const connectStart = now();
const sockets = await connectAll();
const connectMs = now() - connectStart;
const rssConnected = await nodeRss();
process.stdout.write(
  `connected ${sockets.length} clients on ${channelCount} channels` +
    ` in ${(connectMs / 1000).toFixed(1)} s\n`,
);

const expected = await publishFor();
const settle = now() + 5000;
while (delivered < expected && now() < settle) {
  await new Promise((r) => setTimeout(r, 50));
}
const rssEnd = await nodeRss();
latencies.sort((a, b) => a - b);
const perConnection = (rssConnected - rssBefore) / clients / 1024;
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

process.stdout.write(
  [
    `published        ${rate * seconds} messages at ${rate}/s for ${seconds} s`,
    `expected         ${expected}`,
    `delivered        ${delivered}` +
      (delivered === expected ? " (equal)" : " (NOT EQUAL)"),
    `latency p50      ${percentile(latencies, 0.5).toFixed(2)} ms`,
    `latency p99      ${percentile(latencies, 0.99).toFixed(2)} ms`,
    `closed sockets   ${closed}`,
    `node RSS         ${mb(rssBefore)} MiB idle, ${mb(rssConnected)} MiB` +
      ` connected, ${mb(rssEnd)} MiB at the end`,
    `per connection   ${perConnection.toFixed(1)} KiB RSS`,
  ].join("\n") + "\n",
);
for (const ws of sockets) ws.terminate();
process.exit(delivered === expected ? 0 : 1);
