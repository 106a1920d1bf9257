/**
 * Socket.IO 4 with the websocket transport only. An auth middleware checks
 * the token and the connection handler joins the room given in the
 * handshake. With a Redis URL it uses `@socket.io/redis-adapter`, or with
 * `recovery` the Redis Streams adapter and connection state recovery.
 */
import { createServer } from "node:http";

import { createAdapter as pubSubAdapter } from "@socket.io/redis-adapter";
import * as streams from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { Server, type ServerOptions } from "socket.io";

import { tokenVerifier } from "../token.js";
import { host, settings } from "./host.js";

/** How often the outbound limit is checked: Socket.IO has no such limit. */
const OUTBOUND_CHECK_MS = 100;
/** How long a disconnected session can be recovered. */
const RECOVERY_WINDOW_MS = 120_000;

const config = settings();
const verify = tokenVerifier(config.secret);
const options: Partial<ServerOptions> = {
  transports: ["websocket"],
  serveClient: false,
};

if (config.redisUrl) {
  const client = createClient({ url: config.redisUrl });
  await client.connect();
  if (config.recovery) {
    options.adapter = streams.createAdapter(client);
    options.connectionStateRecovery = {
      maxDisconnectionDuration: RECOVERY_WINDOW_MS,
    };
  } else {
    const subscriber = client.duplicate();
    await subscriber.connect();
    options.adapter = pubSubAdapter(client, subscriber);
  }
}

const server = createServer();
const io = new Server(server, options);
let slow = 0;

io.use((socket, next) => {
  const token = String(socket.handshake.auth.token ?? "");
  verify(token).then(
    () => next(),
    () => next(new Error("unauthorized")),
  );
});

io.on("connection", (socket) => {
  if (!socket.recovered) {
    void socket.join(String(socket.handshake.auth.channel ?? ""));
  }
  socket.emit("ok", socket.recovered);
});

setInterval(() => {
  for (const socket of io.sockets.sockets.values()) {
    const transport = socket.conn.transport as unknown as {
      socket?: { bufferedAmount: number };
    };
    if ((transport.socket?.bufferedAmount ?? 0) > config.outboundLimit) {
      slow += 1;
      socket.disconnect(true);
    }
  }
}, OUTBOUND_CHECK_MS).unref();

await new Promise<void>((resolve) =>
  server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, resolve),
);

host({
  port: (server.address() as { port: number }).port,
  publish: (channel, data) => {
    io.to(channel).emit("m", data);
  },
  connections: () => io.engine.clientsCount,
  slowCloses: () => slow,
});
