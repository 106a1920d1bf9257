import { readFileSync } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";

import {
  CloseCode,
  ErrorCode,
  SUBPROTOCOL,
  isValidChannel,
  isValidIdempotencyKey,
  namespaceOf,
  type Json,
} from "@switchboard/protocol";
import { WebSocketServer, type WebSocket } from "ws";

import { TokenVerifier } from "./auth.js";
import {
  ChannelHub,
  type LocalSubscription,
  type Subscriber,
} from "./channel-hub.js";
import { Connection } from "./connection.js";
import type { Engine, PublishOutcome } from "./engine.js";
import { InsecureError } from "./errors.js";
import { handleApiRequest } from "./http-api.js";
import type { Logger } from "./logger.js";
import { MemoryEngine } from "./memory-engine.js";
import { Metrics } from "./metrics.js";
import { Flusher } from "./outbox.js";
import { RedisEngine } from "./redis-engine.js";
import type { NodeContext } from "./node-context.js";
import { RequestError } from "./request-error.js";
import { serialize } from "./wire.js";
import {
  namespaceOptions,
  resolveOptions,
  type NodeOptions,
  type Readiness,
  type ResolvedOptions,
} from "./options.js";
import {
  checkSubprotocol,
  clientAddress,
  isLoopback,
  refuseUpgrade,
  type UpgradeRefusal,
} from "./upgrade.js";

/** Longest pause between maintenance ticks (heartbeats, budget), ms. */
const MAX_TICK_MS = 1_000;

/** Seconds a refused upgrade is asked to wait before trying again. */
const RETRY_AFTER_S = 5;

/** The package version, reported in the `connect` result. */
const VERSION: string = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).version;

type State = "idle" | "running" | "draining" | "closed";

/** Timings of a drain; `close()` uses zeros. */
interface DrainTimings {
  readonly delay: number;
  readonly window: number;
  readonly timeout: number;
}

/**
 * One Switchboard node: a WebSocket gateway and HTTP API over an engine.
 * It can listen on its own or attach to an existing `http.Server`.
 */
export class SwitchboardNode implements NodeContext {
  readonly options: ResolvedOptions;
  readonly engine: Engine;
  readonly hub = new ChannelHub();
  readonly flusher = new Flusher();
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly version = VERSION;

  private state: State = "idle";
  private drainedAt = 0;
  private readonly connections = new Set<Connection>();
  private readonly perAddress = new Map<string, number>();
  private readonly interests = new Map<string, Promise<void>>();
  private readonly wss: WebSocketServer;
  private readonly servers: Server[] = [];
  /** Servers `listen` created, whose connections the node may cut. */
  private readonly ownServers = new Set<Server>();
  private ticker: NodeJS.Timeout | undefined;
  private emptied: (() => void) | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(options: NodeOptions = {}) {
    this.options = resolveOptions(options);
    this.logger = this.options.logger;
    this.engine = createEngine(this.options);
    this.verifier = new TokenVerifier(this.options);
    this.metrics = new Metrics({
      connections: () => this.connections.size,
      channels: () => this.hub.size,
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.frameLimit,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (offered) =>
        offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false,
    });
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Whether the node accepts new connections (`/readyz`). */
  get ready(): boolean {
    return this.state === "running" && this.engine.health().ready;
  }

  /** What `/readyz` reports: ready, or the reason and since when not. */
  readiness(): Readiness {
    if (this.state !== "running") {
      return { ready: false, reason: "draining", since: this.drainedAt };
    }
    const { ready, reason, shard, since } = this.engine.health();
    return ready ? { ready } : { ready, shard, reason, since };
  }

  /**
   * Starts the engine and timers, once; `listen`, `attach` and the first
   * upgrade or request call it.
   */
  start(): Promise<void> {
    this.starting ??= this.boot();
    return this.starting;
  }

  private async boot(): Promise<void> {
    this.state = "running";
    await this.engine.start({
      publication: (publication) => {
        const count = this.hub.deliver(publication);
        if (count > 0) this.metrics.delivered.inc(count);
      },
      presence: (event) =>
        this.hub.announce(event, this.options.joinLeaveMaxMembers),
      insufficient: (channel) => this.insufficient(channel),
      deaf: (channels) => this.moveAway(channels),
      control: (command) => {
        if (command.type === "disconnect") {
          this.disconnectUser(command.user, command.reconnect === true);
        } else if (typeof command.channel === "string") {
          this.unsubscribeUser(command.user, command.channel);
        }
      },
    });
    const { heartbeat, pongTimeout } = this.options;
    const tick = Math.min(
      MAX_TICK_MS,
      Math.max(10, Math.min(heartbeat || pongTimeout, pongTimeout) / 4),
    );
    this.ticker = setInterval(() => this.maintain(), tick);
    this.ticker.unref();
    if (this.options.open) {
      this.logger.warn(
        { nodeId: this.options.nodeId },
        "open mode: no token verification, every connection is anonymous",
      );
    }
  }

  /** Creates an HTTP server for the node and listens on host and port. */
  async listen(): Promise<{ host: string; port: number }> {
    const { host, port } = this.options;
    this.checkOpenMode(host);
    await this.start();
    const server = createServer();
    this.ownServers.add(server);
    this.attach(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    this.logger.info(
      { nodeId: this.options.nodeId, host, port: address.port },
      "listening",
    );
    return { host, port: address.port };
  }

  /**
   * Serves the WebSocket endpoint and HTTP API on `server`; other paths get
   * 404. To share a server with other handlers, call `handleUpgrade` and
   * `handleRequest` from your own listeners instead.
   */
  attach(server: Server): void {
    this.servers.push(server);
    void this.start();
    server.on("listening", () => {
      const address = server.address();
      if (typeof address !== "object" || address === null) return;
      try {
        this.checkOpenMode(address.address);
      } catch (error) {
        server.close();
        server.emit("error", error);
      }
    });
    server.on("upgrade", (request, socket, head) => {
      if (!this.handleUpgrade(request, socket, head)) {
        refuseUpgrade(socket, {
          status: 404,
          reason: "not_found",
          message: "no WebSocket endpoint here",
        });
      }
    });
    server.on("request", (request, response) => {
      if (!this.handleRequest(request, response)) {
        response.writeHead(404, { "Content-Type": "application/json" });
        response.end('{"error":{"code":"not_found","message":"not found"}}');
      }
    });
  }

  /**
   * Takes an upgrade on the node's path; returns false, touching nothing,
   * for any other path.
   */
  handleUpgrade(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): boolean {
    const path = (request.url ?? "/").split("?", 1)[0];
    if (path !== this.options.path) return false;
    if (this.state === "idle") void this.start();

    socket.on("error", this.upgradeSocketError);
    const address = clientAddress(request, this.options.trustProxy);
    const refusal = this.admit(request, address);
    if (refusal) {
      this.metrics.rejectedUpgrades.inc({ reason: refusal.reason });
      refuseUpgrade(socket, refusal);
      return true;
    }
    // Counted only once the handshake succeeds (ws calls back at once, so
    // no other upgrade slips in between): a failed one never calls back.
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
      this.accept(ws, socket, address);
    });
    return true;
  }

  /** One listener for every upgraded socket, not a closure per socket. */
  private readonly upgradeSocketError = (error: Error): void => {
    this.logger.debug({ err: error.message }, "upgrade socket error");
  };

  /** Serves the HTTP API; returns false for paths that are not its own. */
  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    if (this.state === "idle") void this.start();
    // Closing the listener leaves keep-alive connections open, and a
    // proxy's upstream pool keeps using them: a draining node answers on
    // them once more, then closes each, so the process can exit.
    const stopping = this.state === "draining" || this.state === "closed";
    if (stopping) response.setHeader("Connection", "close");
    const handled = handleApiRequest(this, request, response);
    if (stopping && !handled) response.removeHeader("Connection");
    return handled;
  }

  /**
   * Open mode is allowed only on loopback addresses, or with `insecure`.
   * Throws an `InsecureError` otherwise.
   */
  private checkOpenMode(host: string): void {
    const { open, insecure } = this.options;
    if (open && !insecure && !isLoopback(host)) {
      throw new InsecureError(
        `open mode on ${host} is refused: set a token secret, or insecure` +
          " (--insecure) to allow it",
      );
    }
  }

  /**
   * Publishes from the server side, as the HTTP API does. Throws a
   * `RequestError` (`bad_request`, `too_large`) for bad input.
   */
  async publish(
    channel: string,
    data: Json,
    options: { key?: string } = {},
  ): Promise<PublishOutcome> {
    const { maxMessageSize } = this.options;
    if (!isValidChannel(channel)) {
      throw new RequestError(ErrorCode.BadRequest, "invalid channel name");
    }
    if (options.key !== undefined && !isValidIdempotencyKey(options.key)) {
      throw new RequestError(ErrorCode.BadRequest, "invalid key");
    }
    const serialized = serialize(data);
    if (Buffer.byteLength(serialized) > maxMessageSize) {
      throw new RequestError(
        ErrorCode.TooLarge,
        `data over ${maxMessageSize} bytes`,
      );
    }
    const namespace = namespaceOptions(this.options, namespaceOf(channel));
    const outcome = await this.engine.publish(channel, serialized, {
      key: options.key,
      publisher: undefined,
      historySize: namespace.historySize,
      historyTtl: namespace.historyTtl,
      idempotencyWindow: namespace.idempotencyWindow,
    });
    if (!outcome.duplicate) this.metrics.published.inc({ source: "http" });
    return outcome;
  }

  /** Tells every local subscriber of `channel` to resubscribe and recover. */
  private insufficient(channel: string): void {
    this.logger.warn({ channel }, "stream cannot be vouched for");
    for (const connection of this.connections) {
      connection.endSubscription(
        channel,
        "insufficient_state",
        "messages were lost; resubscribe to recover",
        true,
      );
    }
  }

  /**
   * Drains the connections subscribed to any of `channels`, as a drain
   * would: told to reconnect within `drainWindow`, then closed with 1001.
   */
  private moveAway(channels: readonly string[]): void {
    const affected = new Set(channels);
    const { drainWindow } = this.options;
    for (const connection of this.connections) {
      if (!connection.channels().some((c) => affected.has(c))) continue;
      const after = Math.floor(Math.random() * drainWindow);
      connection.send(
        JSON.stringify({ type: "reconnect", after, reason: "node deaf" }),
      );
      setTimeout(
        () => connection.close(CloseCode.GoingAway, "node deaf"),
        after,
      ).unref();
    }
  }

  /**
   * Closes every connection of a user key (a token's `sub`, or an anonymous
   * `anon:` key from presence): 4000, or 4009 to let it return.
   */
  disconnectUser(user: string, reconnect: boolean): number {
    let count = 0;
    for (const connection of this.connections) {
      if (connection.user !== user) continue;
      connection.close(
        reconnect ? CloseCode.DisconnectedMayReturn : CloseCode.Disconnected,
        "disconnected by the server",
      );
      count += 1;
    }
    return count;
  }

  /** Ends `user`'s subscriptions to `channel`; they are not resumed. */
  unsubscribeUser(user: string, channel: string): number {
    let count = 0;
    for (const connection of this.connections) {
      if (connection.user !== user) continue;
      const ended = connection.endSubscription(
        channel,
        "server",
        "unsubscribed by the server",
        false,
      );
      if (ended) count += 1;
    }
    return count;
  }

  watch(
    channel: string,
    subscriber: Subscriber,
    subscription: LocalSubscription,
  ): void {
    this.hub.add(channel, subscriber, subscription);
  }

  interest(channel: string): Promise<void> {
    let interest = this.interests.get(channel);
    if (!interest) {
      interest = this.engine.subscribe(channel);
      this.interests.set(channel, interest);
      interest.catch(() => this.interests.delete(channel));
    }
    return interest;
  }

  unwatch(channel: string, subscriber: Subscriber): void {
    if (
      this.hub.remove(channel, subscriber) &&
      this.interests.delete(channel)
    ) {
      this.engine.unsubscribe(channel);
    }
  }

  forget(connection: Connection, code: number): void {
    this.connections.delete(connection);
    const left = (this.perAddress.get(connection.address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(connection.address, left);
    else this.perAddress.delete(connection.address);
    this.metrics.closes.inc({ code: String(code) });
    if (this.connections.size === 0) this.emptied?.();
  }

  /**
   * Drains as DESIGN.md's Operations states: not ready at once, the
   * listener closes after `drainDelay`, each client is told to reconnect
   * within `drainWindow`, and what is left is cut at `drainTimeout`.
   */
  drain(): Promise<void> {
    const { drainDelay, drainWindow, drainTimeout } = this.options;
    return this.stop({
      delay: drainDelay,
      window: drainWindow,
      timeout: drainTimeout,
    });
  }

  /** Stops at once: every client is told to reconnect now. */
  close(): Promise<void> {
    return this.stop({ delay: 0, window: 0, timeout: 1_000 });
  }

  private stop(timings: DrainTimings): Promise<void> {
    this.stopping ??= this.shutDown(timings);
    return this.stopping;
  }

  private async shutDown({ delay, window, timeout }: DrainTimings) {
    const deadline = Date.now() + timeout;
    this.state = "draining";
    this.drainedAt = Date.now();
    this.logger.info({ nodeId: this.options.nodeId }, "draining");
    await sleep(Math.min(delay, timeout));

    const closing = this.servers.map((server) => ({
      own: this.ownServers.has(server),
      server,
      closed: closeServer(server),
    }));
    const empty = new Promise<void>((resolve) => {
      this.emptied = resolve;
      if (this.connections.size === 0) resolve();
    });
    for (const connection of this.connections) {
      const after = Math.floor(Math.random() * window);
      connection.send(
        JSON.stringify({ type: "reconnect", after, reason: "node draining" }),
      );
      setTimeout(
        () => connection.close(CloseCode.GoingAway, "node draining"),
        after,
      ).unref();
    }
    await Promise.race([empty, sleep(Math.max(0, deadline - Date.now()))]);

    for (const connection of this.connections) connection.terminate();
    clearInterval(this.ticker);
    this.state = "closed";
    // Idle keep-alive connections go now. HTTP requests in flight finish
    // (their connections then close) until the deadline on the node's own
    // servers, where what is left is cut; an attached server keeps its
    // other connections.
    for (const { server } of closing) server.closeIdleConnections();
    const own = closing.filter((entry) => entry.own);
    const attached = closing.filter((entry) => !entry.own);
    await Promise.race([
      Promise.all([
        ...own.map((entry) => entry.closed),
        Promise.race([
          Promise.all(attached.map((entry) => entry.closed)),
          sleep(100),
        ]),
      ]),
      sleep(Math.max(100, deadline - Date.now())),
    ]);
    for (const { server } of own) server.closeAllConnections();
    await this.engine.close();
    this.logger.info({ nodeId: this.options.nodeId }, "stopped");
  }

  private admit(
    request: IncomingMessage,
    address: string,
  ): UpgradeRefusal | undefined {
    const { options } = this;
    if (!this.ready) {
      return unavailable("not_ready", this.readiness().reason ?? "not ready");
    }
    if (this.connections.size >= options.maxConnections) {
      return unavailable("max_connections", "node is at its connection limit");
    }
    const origin = request.headers.origin;
    if (
      options.allowedOrigins.length > 0 &&
      (origin === undefined || !options.allowedOrigins.includes(origin))
    ) {
      return { status: 403, reason: "origin", message: "origin not allowed" };
    }
    const subprotocol = checkSubprotocol(request);
    if (subprotocol) return subprotocol;
    const perAddress = this.perAddress.get(address) ?? 0;
    if (
      options.maxConnectionsPerIp > 0 &&
      perAddress >= options.maxConnectionsPerIp
    ) {
      return {
        status: 429,
        reason: "per_ip",
        message: "too many connections from this address",
        retryAfter: RETRY_AFTER_S,
      };
    }
    return undefined;
  }

  private accept(ws: WebSocket, socket: Duplex, address: string): void {
    const connection = new Connection(ws, socket, this, address);
    this.connections.add(connection);
  }

  /** Heartbeats and the outbound budget, for every connection. */
  private maintain(): void {
    const now = Date.now();
    const { heartbeat, pongTimeout, outboundBudget } = this.options;
    let buffered = 0;
    for (const connection of this.connections) {
      if (connection.expireAt(now)) continue;
      buffered += connection.buffered;
      if (heartbeat === 0) continue;
      if (connection.pingSentAt > 0) {
        if (now - connection.pingSentAt >= pongTimeout) {
          this.logger.debug({ connId: connection.id }, "no pong: terminated");
          connection.terminate();
        }
      } else if (now - connection.lastPingAt >= heartbeat) {
        connection.ping(now);
      }
    }
    if (buffered > outboundBudget) this.shed(buffered - outboundBudget);
  }

  /** Closes the largest outbound buffers until `excess` bytes are freed. */
  private shed(excess: number): void {
    const largest = [...this.connections].sort(
      (a, b) => b.buffered - a.buffered,
    );
    for (const connection of largest) {
      if (excess <= 0) return;
      excess -= connection.buffered;
      if (connection.closing) continue;
      this.metrics.slowConsumers.inc();
      connection.close(CloseCode.SlowConsumer, "outbound budget exceeded");
    }
  }
}

function unavailable(reason: string, message: string): UpgradeRefusal {
  return { status: 503, reason, message, retryAfter: RETRY_AFTER_S };
}

/** A pause that does not keep the process alive by itself. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function createEngine(options: ResolvedOptions): Engine {
  if (options.engine === "redis") {
    return new RedisEngine({
      url: options.redisUrl,
      historyMetaTtl: options.historyMetaTtl,
      unsubscribeLinger: options.unsubscribeLinger,
      presenceTtl: options.presenceTtl,
      livenessInterval: options.livenessInterval,
      reapInterval: options.reapInterval,
      canaryInterval: options.canaryInterval,
      positionCheckInterval: options.positionCheckInterval,
      deafDrainAfter: options.deafDrainAfter,
      pingInterval: options.redisPingInterval,
      timeout: options.redisTimeout,
      logger: options.logger,
    });
  }
  return new MemoryEngine({ historyBudget: options.historyBudget });
}

/** Creates a node; call `listen()` or `attach(server)` to serve. */
export function createNode(options?: NodeOptions): SwitchboardNode {
  return new SwitchboardNode(options);
}
