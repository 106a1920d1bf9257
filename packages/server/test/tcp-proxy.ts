import { connect, createServer, type Socket } from "node:net";

/** Which connections a stall holds. */
export type StallScope = "all" | "subscribers";

/** A loopback TCP proxy a test can cut, stall and restore. */
export interface TcpProxy {
  readonly port: number;
  /** Drops every connection and refuses new ones until `restore`. */
  cut(): void;
  /**
   * A black hole: keeps connections open, new ones included, but forwards
   * nothing either way until `restore` (no FIN, no RST). With
   * "subscribers", only connections that sent a Redis SUBSCRIBE.
   */
  stall(scope?: StallScope): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  subscriber: boolean;
  /** Bytes held while stalled, in order, with where they go. */
  held: [Socket, Buffer][];
}

/** Forwards 127.0.0.1:<port> to 127.0.0.1:`target`. */
export async function startProxy(target: number): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let refusing = false;
  let stalled: StallScope | undefined;
  const holds = (pair: Pair) =>
    stalled === "all" || (stalled === "subscribers" && pair.subscriber);
  const forward = (pair: Pair, to: Socket, chunk: Buffer) => {
    if (holds(pair)) pair.held.push([to, chunk]);
    else to.write(chunk);
  };
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target, "127.0.0.1");
    const pair: Pair = { client, upstream, subscriber: false, held: [] };
    pairs.add(pair);
    client.on("data", (chunk: Buffer) => {
      if (/subscribe/i.test(chunk.toString("latin1"))) {
        pair.subscriber = true;
      }
      forward(pair, upstream, chunk);
    });
    upstream.on("data", (chunk: Buffer) => forward(pair, client, chunk));
    for (const socket of [client, upstream]) {
      socket.on("close", () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
      socket.on("error", () => socket.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const destroyAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream.destroy();
    }
  };
  return {
    port,
    cut() {
      refusing = true;
      destroyAll();
    },
    stall(scope = "all") {
      stalled = scope;
    },
    restore() {
      refusing = false;
      stalled = undefined;
      for (const pair of pairs) {
        for (const [to, chunk] of pair.held) to.write(chunk);
        pair.held = [];
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        destroyAll();
        server.close(() => resolve());
      }),
  };
}
