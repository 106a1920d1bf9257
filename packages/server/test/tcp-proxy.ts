import { connect, createServer, type Socket } from "node:net";

/** A loopback TCP proxy a test can cut, stall and restore. */
export interface TcpProxy {
  readonly port: number;
  /** Drops every connection and refuses new ones until `restore`. */
  cut(): void;
  /**
   * A black hole: keeps every connection open, new ones included, but
   * forwards nothing either way until `restore` (no FIN, no RST).
   */
  stall(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Forwards 127.0.0.1:<port> to 127.0.0.1:`target`. */
export async function startProxy(target: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let refusing = false;
  let stalled = false;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target, "127.0.0.1");
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      // Unread bytes wait in the kernel, as a black-holed link's would.
      if (stalled) socket.pause();
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    cut() {
      refusing = true;
      for (const socket of sockets) socket.destroy();
    },
    stall() {
      stalled = true;
      for (const socket of sockets) socket.pause();
    },
    restore() {
      refusing = false;
      stalled = false;
      for (const socket of sockets) socket.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
