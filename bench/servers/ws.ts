/**
 * The floor: a raw `ws` server that frames each message once and writes
 * the same bytes to every subscriber's socket. Started with `coalesced`,
 * it queues frames per socket and writes each socket's queue once per
 * event-loop turn. With a Redis URL, publications travel through Redis
 * pub/sub, so two of these make a fleet.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";

import { createClient } from "redis";
import { WebSocketServer } from "ws";

import { tokenVerifier } from "../token.js";
import { host, settings, type Publication } from "./host.js";

const config = settings();
const coalesced = process.argv[3] === "coalesced";
const verify = tokenVerifier(config.secret);
const channels = new Map<string, Set<Socket>>();
let open = 0;
let slow = 0;

/** A final, unmasked text frame around `payload` (RFC 6455, 5.2). */
function frame(payload: string): Buffer {
  const data = Buffer.from(payload);
  const length = data.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const bytes = Buffer.allocUnsafe(2 + extra + length);
  bytes[0] = 0x81;
  if (extra === 0) {
    bytes[1] = length;
  } else if (extra === 2) {
    bytes[1] = 126;
    bytes.writeUInt16BE(length, 2);
  } else {
    bytes[1] = 127;
    bytes.writeBigUInt64BE(BigInt(length), 2);
  }
  data.copy(bytes, 2 + extra);
  return bytes;
}

function overLimit(socket: Socket): boolean {
  if (socket.writableLength <= config.outboundLimit) return false;
  slow += 1;
  socket.destroy();
  return true;
}

const queues = new Map<Socket, Buffer[]>();
let flushScheduled = false;

function flush(): void {
  flushScheduled = false;
  for (const [socket, queue] of queues) {
    if (queue.length === 1) {
      socket.write(queue[0]!);
    } else {
      socket.cork();
      for (const buffer of queue) socket.write(buffer);
      socket.uncork();
    }
    overLimit(socket);
  }
  queues.clear();
}

function deliverLocally(channel: string, payload: string): void {
  const sockets = channels.get(channel);
  if (!sockets) return;
  const bytes = frame(payload);
  if (!coalesced) {
    for (const socket of sockets) {
      socket.write(bytes);
      overLimit(socket);
    }
    return;
  }
  for (const socket of sockets) {
    const queue = queues.get(socket);
    if (queue) queue.push(bytes);
    else queues.set(socket, [bytes]);
  }
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

const wss = new WebSocketServer({ noServer: true });
const server = createServer((_request, response) => response.end());

server.on("upgrade", async (request: IncomingMessage, socket: Socket, head) => {
  const url = new URL(request.url ?? "/", "http://localhost");
  const channel = url.searchParams.get("channel") ?? "";
  const auth = request.headers.authorization ?? "";
  try {
    await verify(auth.replace(/^Bearer /, ""));
  } catch {
    socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    const raw = (ws as unknown as { _socket: Socket })._socket;
    let members = channels.get(channel);
    if (!members) channels.set(channel, (members = new Set()));
    members.add(raw);
    open += 1;
    ws.on("close", () => {
      open -= 1;
      members.delete(raw);
      queues.delete(raw);
    });
    ws.send('{"type":"ok"}');
  });
});

let publish = (channel: string, data: Publication) =>
  deliverLocally(channel, JSON.stringify(data));

if (config.redisUrl) {
  const publisher = createClient({ url: config.redisUrl });
  const subscriber = publisher.duplicate();
  await Promise.all([publisher.connect(), subscriber.connect()]);
  await subscriber.pSubscribe("bench:*", (message, channel) =>
    deliverLocally(channel, message),
  );
  publish = (channel, data) => {
    void publisher.publish(channel, JSON.stringify(data));
  };
}

await new Promise<void>((resolve) =>
  server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, resolve),
);

host({
  port: (server.address() as { port: number }).port,
  publish: (channel, data) => publish(channel, data),
  connections: () => open,
  slowCloses: () => slow,
});
