import { createHmac } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";

import { WebSocket, type MessageEvent } from "ws";

import type { WebSocketConstructor } from "../src/transport.js";

/** What the proxy does with traffic. */
export type ProxyMode =
  /** Forward both ways. */
  | "pass"
  /** Accept and drop new connections at once. */
  | "refuse"
  /** Forward client to server only: replies are lost. */
  | "mute"
  /** Forward nothing and keep every socket open: a dead network. */
  | "freeze";

/**
 * A loopback TCP proxy between the client and a real node, to cut, refuse,
 * mute or freeze the network. It injects faults; it never speaks the
 * protocol.
 */
export class Proxy {
  /** Connections accepted so far, refused ones included. */
  accepted = 0;
  mode: ProxyMode = "pass";
  private readonly pairs = new Set<[Socket, Socket]>();

  private constructor(
    private readonly server: Server,
    public targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<Proxy> {
    const server = createServer();
    const proxy = new Proxy(server, targetPort);
    server.on("connection", (socket) => proxy.accept(socket));
    await new Promise<void>((resolve) =>
      server.listen(0, "127.0.0.1", resolve),
    );
    return proxy;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error();
    return address.port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Drops every open connection, as a network failure would. */
  cut(): void {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted += 1;
    client.on("error", () => {});
    if (this.mode === "refuse") {
      client.destroy();
      return;
    }

    const upstream = connect(this.targetPort, "127.0.0.1");
    upstream.on("error", () => {});
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);

    client.on("data", (chunk) => {
      if (this.mode === "pass" || this.mode === "mute") upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (this.mode === "pass") client.write(chunk);
    });
    const end = (): void => {
      if (this.mode === "freeze") return;
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
  }
}

/** An HS256 JWT signed with `secret`, for nodes with `tokenSecret`. */
export function signToken(
  secret: string,
  claims: Record<string, unknown>,
): string {
  const encode = (value: unknown): string =>
    Buffer.from(JSON.stringify(value)).toString("base64url");
  const head = encode({ alg: "HS256", typ: "JWT" });
  const body = encode(claims);
  const signature = createHmac("sha256", secret)
    .update(`${head}.${body}`)
    .digest("base64url");
  return `${head}.${body}.${signature}`;
}

/** A token for `sub` granting every channel, expiring in `expiresInS`. */
export function grantAll(
  secret: string,
  sub: string,
  expiresInS: number,
): string {
  return signToken(secret, {
    sub,
    exp: Math.floor(Date.now() / 1000) + expiresInS,
    sb: { subscribe: ["*"], publish: ["*"] },
  });
}

/** Polls `check` until it is true; fails after `timeoutMs`. */
export async function waitFor(
  check: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A `ws` WebSocket that loses the incoming frames `drop` picks, as a lossy
 * fan-out path would: a fault injected into a real connection.
 */
export function lossyWebSocket(
  drop: (frame: Record<string, unknown>) => boolean,
): WebSocketConstructor {
  const handler = Object.getOwnPropertyDescriptor(
    WebSocket.prototype,
    "onmessage",
  ) as PropertyDescriptor;

  class LossyWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      const socket = new WebSocket(url, protocols);
      Object.defineProperty(socket, "onmessage", {
        get: () => handler.get?.call(socket),
        set: (listener: ((event: MessageEvent) => void) | null) =>
          handler.set?.call(
            socket,
            listener &&
              ((event: MessageEvent) => {
                if (!drop(JSON.parse(String(event.data)))) listener(event);
              }),
          ),
      });
      return socket;
    }
  }
  return LossyWebSocket as unknown as WebSocketConstructor;
}
