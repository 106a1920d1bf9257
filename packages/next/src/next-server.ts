import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";

import {
  InsecureError,
  createNode,
  type NodeOptions,
  type SwitchboardNode,
} from "@switchboard/server";
import nextModule from "next";

import { attachSwitchboard } from "./one-port.js";

/** Options of `createNextServer`. */
export interface NextServerOptions {
  /** Run `next dev` (hot reload) instead of the built app. @default false */
  dev?: boolean;
  /** The Next.js app's folder. @default process.cwd() */
  dir?: string;
  /** Address to listen on. @default "127.0.0.1" */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default 3000 */
  port?: number;
  /** A node of yours; without it one is made from `nodeOptions`. */
  node?: SwitchboardNode;
  /** Options of the node made when `node` is not given. */
  nodeOptions?: NodeOptions;
  /** Serve the node's HTTP API before Next.js. @default false */
  api?: boolean;
  /**
   * Upgrade path prefixes passed to Next.js under `dev`; the built app
   * takes no upgrades, so without `dev` they all get 404.
   * @default ["/_next/webpack-hmr", "/_next/hmr"]
   */
  nextUpgradePrefixes?: readonly string[];
  /** Silence Next.js's own start-up lines. @default false */
  quiet?: boolean;
}

/** A Next.js app and a Switchboard node on one `http.Server`. */
export interface NextServer {
  readonly server: Server;
  readonly node: SwitchboardNode;
  /** Listens on `hostname` and `port`; resolves with the bound port. */
  listen(): Promise<{ hostname: string; port: number }>;
  /** Closes the node's connections, the server and Next.js. */
  close(): Promise<void>;
}

type CreateNextApp = typeof nextModule.default;

// Next.js is CommonJS: Node's import gives its `module.exports`, which the
// type declarations describe as the `default` of a namespace.
const next = ((nextModule as { default?: CreateNextApp }).default ??
  nextModule) as CreateNextApp;

/**
 * Hands an upgrade to Next.js's listener on the stand-in. Next.js listens
 * from its first request on; until then `false` makes the helper answer
 * 404. Its hot-reload handler takes or refuses the socket before the event
 * loop turns; one it left alone by then gets 404 from the helper.
 */
async function forward(
  nextUpgrades: EventEmitter,
  request: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<boolean> {
  if (!nextUpgrades.emit("upgrade", request, socket, head)) return false;
  await new Promise((resolve) => setImmediate(resolve));
  return true;
}

/** Loopback names where a node without tokens may listen. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/**
 * Prepares the Next.js app in `dir` and a Switchboard node and puts both on
 * one HTTP server (see `attachSwitchboard`). Throws an `InsecureError`
 * when a node in open mode would listen on an address that is not
 * loopback, as `switchboard start` does.
 */
export async function createNextServer(
  options: NextServerOptions = {},
): Promise<NextServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const node = options.node ?? createNode(options.nodeOptions);
  if (node.options.open && !node.options.insecure && !isLoopback(hostname)) {
    throw new InsecureError(
      `open mode on ${hostname} is refused: set a token secret, or ` +
        "insecure to allow it",
    );
  }

  // Next.js adds its own upgrade listener, which takes every path, to the
  // server named by `httpServer` (or, without it, to the first request's
  // server). This stand-in receives it instead: the helper stays the only
  // listener on the real server and hands Next.js its hot-reload upgrades.
  const nextUpgrades = new EventEmitter();
  const dev = options.dev ?? false;
  const app = next({
    dev,
    dir: options.dir ?? process.cwd(),
    hostname,
    port: options.port ?? 3000,
    quiet: options.quiet ?? false,
    httpServer: nextUpgrades as unknown as Server,
  });
  await app.prepare();
  await node.start();

  const server = createServer();
  attachSwitchboard(server, {
    node,
    handle: app.getRequestHandler(),
    // The built app serves no upgrades: its handler would leave them open.
    upgrade: dev
      ? (request, socket, head) => forward(nextUpgrades, request, socket, head)
      : undefined,
    api: options.api,
    nextUpgradePrefixes: options.nextUpgradePrefixes,
  });

  return {
    server,
    node,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 3000, hostname, () => {
          server.off("error", reject);
          const { port } = server.address() as AddressInfo;
          resolve({ hostname, port });
        });
      }),
    close: async () => {
      await node.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await app.close();
    },
  };
}
