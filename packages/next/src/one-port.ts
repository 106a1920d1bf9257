import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

import { ConfigError, type SwitchboardNode } from "@switchboard/server";

/**
 * Upgrade paths handed to Next.js: the hot-reload socket of `next dev`
 * (`/_next/hmr` in Next.js 16, `/_next/webpack-hmr` before).
 */
export const DEFAULT_NEXT_UPGRADE_PREFIXES: readonly string[] = [
  "/_next/webpack-hmr",
  "/_next/hmr",
];

/** Options of `attachSwitchboard`. */
export interface AttachOptions {
  /** The Switchboard node; it takes upgrades on its path (`/ws`). */
  node: SwitchboardNode;
  /** Next.js's request handler, `app.getRequestHandler()`. */
  handle: (request: IncomingMessage, response: ServerResponse) => unknown;
  /**
   * Takes the upgrades of `nextUpgradePrefixes` for Next.js. Returning
   * `false` means not taken, which gets 404; a promise means "handled
   * once it settles": a socket then neither answered nor closed gets 404
   * (Next.js ignores paths it does not serve and leaves them open).
   * Without it, every upgrade that is not the node's gets 404.
   * `createNextServer` passes the one Next.js's development server needs.
   */
  upgrade?: (
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ) => boolean | Promise<unknown>;
  /**
   * Serve the node's HTTP API (`/api/*`) and `/healthz`, `/readyz`,
   * `/metrics` before Next.js: app routes under `/api/` are then hidden.
   * @default false
   */
  api?: boolean;
  /**
   * Path prefixes of upgrades passed to Next.js; any other path gets 404.
   * @default ["/_next/webpack-hmr", "/_next/hmr"]
   */
  nextUpgradePrefixes?: readonly string[];
}

/**
 * Makes `server` serve a Switchboard node and a Next.js app: the only
 * `upgrade` listener, it gives the node's path to the node, the prefixes
 * of `nextUpgradePrefixes` to Next.js, and answers 404 to the rest, so no
 * socket ever reaches two handlers. Every request goes to Next.js, after
 * the node's HTTP API when `api` is set. Adds listeners only; throws a
 * `ConfigError` if the server already has an `upgrade` listener.
 */
export function attachSwitchboard(server: Server, options: AttachOptions) {
  const { node, handle, upgrade, api = false } = options;
  const prefixes = options.nextUpgradePrefixes ?? DEFAULT_NEXT_UPGRADE_PREFIXES;
  if (server.listenerCount("upgrade") > 0) {
    throw new ConfigError(
      "the server already has an upgrade listener: attachSwitchboard " +
        "must be the only one",
    );
  }

  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head) => {
    if (node.handleUpgrade(request, socket, head)) return;
    const path = (request.url ?? "/").split("?", 1)[0]!;
    if (upgrade && prefixes.some((prefix) => path.startsWith(prefix))) {
      const taken = upgrade(request, socket, head);
      if (taken instanceof Promise) {
        taken.then(
          (value) => {
            if (value === false || untouched(socket)) notFound(socket);
          },
          () => (untouched(socket) ? notFound(socket) : socket.destroy()),
        );
        return;
      }
      if (taken) return;
    }
    notFound(socket);
  });

  server.on("request", (request, response) => {
    if (api && node.handleRequest(request, response)) return;
    void Promise.resolve(handle(request, response)).catch(() => {
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
}

/** Whether no handler answered, closed or took over the socket. */
function untouched(socket: Duplex): boolean {
  const written = (socket as { bytesWritten?: number }).bytesWritten ?? 0;
  return !socket.destroyed && !socket.writableEnded && written === 0;
}

function notFound(socket: Duplex): void {
  socket.on("error", () => undefined);
  const body = '{"error":{"code":"not_found","message":"no WebSocket here"}}';
  socket.end(
    "HTTP/1.1 404 Not Found\r\nConnection: close\r\n" +
      "Content-Type: application/json\r\n" +
      `Content-Length: ${body.length}\r\n\r\n${body}`,
  );
}
