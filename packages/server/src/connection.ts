import type { Duplex } from "node:stream";

import {
  CloseCode,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  closeAction,
  decodeRequest,
  namespaceOf,
  type ConnectRequest,
  type HistoryRequest,
  type PresenceRequest,
  type PublishRequest,
  type RefreshRequest,
  type Request,
  type SubscribeRequest,
  type UnsubscribeRequest,
} from "@switchboard/protocol";
import { WebSocket } from "ws";

import {
  ANONYMOUS,
  TokenError,
  canPublish,
  canSubscribe,
  userKey,
  type Identity,
} from "./auth.js";
import type { LocalSubscription, Subscriber } from "./channel-hub.js";
import type { PresenceEntry, ReadOutcome } from "./engine.js";
import type { NodeContext } from "./node-context.js";
import { namespaceOptions, type ResolvedNamespace } from "./options.js";
import { Outbox, type OutboxOwner } from "./outbox.js";
import { randomId } from "./random-id.js";
import { RateLimiter } from "./rate-limit.js";
import { RequestError } from "./request-error.js";
import { recover } from "./recovery.js";
import {
  closeReason,
  errorFrame,
  historyJson,
  okFrame,
  publicationsJson,
  serialize,
  textFrame,
} from "./wire.js";

/** A socket that does not leave after its close frame is cut, ms. */
const CLOSE_GRACE_MS = 5_000;

/**
 * Requests of one connection handled at a time; more wait, and the socket
 * stops being read, so one client cannot make the node build replies
 * faster than it reads them.
 */
const MAX_IN_FLIGHT = 16;

/** Requests waiting for a slot before the socket stops being read. */
const MAX_QUEUED = 16;

/** Where a connection is in its life. */
type Phase = "new" | "connecting" | "connected" | "closing";

interface Subscription extends LocalSubscription {
  readonly presence: PresenceEntry | undefined;
  /**
   * Set until the subscribe has read its position: a later publish on the
   * channel from this connection waits for it, so requests take effect in
   * arrival order and the publisher receives its own message.
   */
  positioned: { promise: Promise<void>; resolve: () => void } | undefined;
}

/**
 * The connection of each socket, so that one set of listeners serves every
 * socket instead of four closures per connection.
 */
const owners = new WeakMap<WebSocket, Connection>();

function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  owners.get(this)?.receive(data, isBinary);
}

function onPong(this: WebSocket): void {
  const connection = owners.get(this);
  if (connection) connection.pingSentAt = 0;
}

function onError(this: WebSocket, error: Error): void {
  owners.get(this)?.socketError(error);
}

function onClose(this: WebSocket, code: number): void {
  owners.get(this)?.socketClosed(code);
}

/** One client's WebSocket: its identity, requests and subscriptions. */
export class Connection implements Subscriber, OutboxOwner {
  /** Server-chosen id, shown to others as `client`. */
  readonly id = randomId(9);
  identity: Identity = ANONYMOUS;
  session = "";
  user = "";
  /** When the last ping went out without a pong yet; 0 when none. */
  pingSentAt = 0;
  lastPingAt = Date.now();

  private phase: Phase = "new";
  /** The code this side closed with, if it did. */
  private closedWith: number | undefined;
  /** Requests waiting for `connect` or for a free in-flight slot. */
  private queued: Request[] = [];
  private inFlight = 0;
  private readonly subscriptions = new Map<string, Subscription>();
  /** Made at the first publish: most connections only listen. */
  private limiter: RateLimiter | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  /** When the token's grace ends, ms since the epoch; see `armExpiry`. */
  private deadline = Infinity;
  /**
   * Frames on their way out. They are written to the socket directly (the
   * upgraded socket `ws` reads from), a turn's worth at a time; control
   * frames (ping, close) still go through `ws`.
   */
  private readonly outbox: Outbox;

  constructor(
    private readonly ws: WebSocket,
    socket: Duplex,
    private readonly node: NodeContext,
    readonly address: string,
  ) {
    const { options } = node;
    this.outbox = new Outbox(socket, node.flusher, this);
    this.connectTimer = setTimeout(
      () => this.close(CloseCode.ConnectTimeout, "no connect in time"),
      options.connectTimeout,
    );

    owners.set(ws, this);
    ws.on("message", onMessage);
    ws.on("pong", onPong);
    ws.on("error", onError);
    ws.on("close", onClose);
  }

  /** Whether a close has started; the socket may still drain. */
  get closing(): boolean {
    return this.phase === "closing";
  }

  /** Unsent bytes queued for this socket. */
  get buffered(): number {
    return this.outbox.buffered;
  }

  /** Queues a JSON text message. */
  send(payload: string): void {
    this.sendFrame(textFrame(payload));
  }

  sendFrame(frame: Buffer): void {
    if (this.phase === "closing") return;
    this.outbox.push(frame);
  }

  /** Sends a WebSocket ping for the heartbeat. */
  ping(now: number): void {
    this.pingSentAt = now;
    this.lastPingAt = now;
    this.ws.ping();
  }

  /**
   * Closes with `code`; the socket is cut if it has not left within
   * CLOSE_GRACE_MS. The server never closes with 1000.
   */
  close(code: number, reason: string): void {
    if (this.phase === "closing") return;
    this.phase = "closing";
    this.closedWith = code;
    this.node.logger.debug({ connId: this.id, code, reason }, "closing");
    this.outbox.flush();
    this.ws.close(code, closeReason(reason));
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /** The outbound buffer limit, for the outbox. */
  get outboundLimit(): number {
    return this.node.options.outboundBufferLimit;
  }

  /** Whether data frames may go out: not after a close frame. */
  canWrite(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Closes a client that does not read what it is sent. */
  overflowed(): void {
    if (this.phase === "closing") return;
    this.node.metrics.slowConsumers.inc();
    this.close(CloseCode.SlowConsumer, "slow consumer");
  }

  /** Drops the socket at once, without a close frame. */
  terminate(): void {
    this.ws.terminate();
  }

  /** The channels the connection is subscribed to. */
  channels(): string[] {
    return [...this.subscriptions.keys()];
  }

  /** Ends one subscription from the server side. */
  endSubscription(
    channel: string,
    code: string,
    reason: string,
    resubscribe: boolean,
  ): boolean {
    if (!this.dropSubscription(channel)) return false;
    this.send(
      JSON.stringify({
        type: "unsubscribed",
        channel,
        code,
        reason,
        resubscribe,
      }),
    );
    return true;
  }

  /** Handles one message from the socket. */
  receive(data: Buffer, isBinary: boolean): void {
    try {
      this.handleFrame(data, isBinary);
    } catch (error) {
      // A bug here must cost this connection, never the node.
      this.node.logger.error(
        { connId: this.id, err: String(error) },
        "frame handling failed",
      );
      this.close(CloseCode.InternalError, "internal error");
    }
  }

  private handleFrame(data: Buffer, isBinary: boolean): void {
    if (this.deadline !== Infinity && this.expireAt(Date.now())) return;
    if (isBinary) {
      this.close(CloseCode.UnsupportedData, "binary frames are not accepted");
      return;
    }
    const request = decodeRequest(data.toString());
    if (request instanceof ProtocolError) {
      this.node.logger.debug(
        { connId: this.id, err: request.message },
        "bad frame",
      );
      if (request.closeCode !== undefined) {
        this.close(request.closeCode, request.message);
      } else if (this.phase === "new") {
        this.close(CloseCode.BadRequest, "the first request must be connect");
      } else {
        this.send(errorFrame(request.id, request.code, request.message));
      }
      return;
    }

    switch (this.phase) {
      case "new":
        if (request.type !== "connect") {
          this.close(CloseCode.BadRequest, "the first request must be connect");
          return;
        }
        this.phase = "connecting";
        void this.run(request, () => this.connect(request));
        return;
      case "connecting":
        this.wait(request);
        return;
      case "connected":
        if (this.inFlight >= MAX_IN_FLIGHT || this.queued.length > 0) {
          this.wait(request);
        } else {
          this.dispatch(request);
        }
        return;
      case "closing":
        return;
    }
  }

  /**
   * Queues a request; a full queue stops reading the socket until it
   * drains. A few wait without a pause: the usual `subscribe` sent right
   * behind `connect` costs no stop and restart of the socket's reads.
   */
  private wait(request: Request): void {
    this.queued.push(request);
    if (this.queued.length >= MAX_QUEUED && !this.ws.isPaused) this.ws.pause();
  }

  /** Dispatches queued requests while slots are free, in order. */
  private pump(): void {
    if (this.phase !== "connected") return;
    while (this.queued.length > 0 && this.inFlight < MAX_IN_FLIGHT) {
      this.dispatch(this.queued.shift()!);
    }
    if (this.queued.length === 0 && this.ws.isPaused) this.ws.resume();
  }

  private dispatch(request: Request): void {
    switch (request.type) {
      case "connect":
        this.fail(request.id, ErrorCode.BadRequest, "already connected");
        return;
      case "subscribe":
        void this.subscribe(request);
        return;
      case "unsubscribe":
        void this.run(request, () => this.unsubscribe(request));
        return;
      case "publish":
        void this.run(request, () => this.publish(request));
        return;
      case "presence":
        void this.run(request, () => this.presence(request));
        return;
      case "history":
        void this.run(request, () => this.history(request));
        return;
      case "ping":
        this.send(okFrame(request.id));
        return;
      case "refresh":
        void this.run(request, () => this.refresh(request));
        return;
    }
  }

  /** Runs a handler and answers its request with `ok` or `error`. */
  private async run(
    request: Request,
    handler: () => Promise<string | undefined>,
  ): Promise<void> {
    this.inFlight += 1;
    try {
      const result = await handler();
      this.send(okFrame(request.id, result));
    } catch (error) {
      this.reject(request, error);
    } finally {
      this.inFlight -= 1;
      this.pump();
    }
  }

  /** Answers a request that failed: an error reply, or a close. */
  private reject(request: Request, error: unknown): void {
    if (error instanceof RequestError) {
      this.fail(request.id, error.code, error.message, error.retryAfter);
      return;
    }
    if (error instanceof TokenError) {
      this.close(error.closeCode, error.message);
      return;
    }
    this.node.logger.error(
      { connId: this.id, type: request.type, err: String(error) },
      "request failed",
    );
    this.fail(request.id, ErrorCode.Internal, "internal error");
  }

  private fail(
    id: number,
    code: ErrorCode,
    message: string,
    retryAfter?: number,
  ): void {
    this.send(errorFrame(id, code, message, retryAfter));
  }

  private async connect(request: ConnectRequest): Promise<string> {
    const { options, verifier } = this.node;
    this.identity =
      request.token !== undefined && !options.open
        ? await verifier.verify(request.token)
        : ANONYMOUS;
    if (this.phase !== "connecting") {
      throw new RequestError(ErrorCode.Unavailable, "connection closed");
    }

    this.session = request.session ?? randomId(12);
    this.user = userKey(this.identity, this.session);
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.phase = "connected";
    this.armExpiry();

    return JSON.stringify({
      client: this.id,
      node: options.nodeId,
      session: this.session,
      protocol: PROTOCOL_VERSION,
      server: this.node.version,
      heartbeat: options.heartbeat,
      pongTimeout: options.pongTimeout,
      expiresIn: this.expiresIn(),
      limits: {
        maxMessageSize: options.maxMessageSize,
        maxSubscriptions: options.maxSubscriptions,
        idempotencyWindow: options.idempotencyWindow,
        recoveryMaxPublications: options.recoveryMaxPublications,
        historyMaxLimit: options.historyMaxLimit,
      },
    });
  }

  /**
   * Subscribes in the steps of DESIGN.md's Guarantees. The reply goes out
   * before any message of the channel, then held messages, then live ones.
   */
  private async subscribe(request: SubscribeRequest): Promise<void> {
    const subscription = this.openSubscription(request);
    if (subscription instanceof RequestError) {
      this.reject(request, subscription);
      return;
    }
    this.inFlight += 1;
    try {
      const result = await this.prepareSubscription(request, subscription);
      this.send(okFrame(request.id, result));
      // An unsubscribe (or the close) that came meanwhile has ended it.
      if (this.subscriptions.get(request.channel) === subscription) {
        this.goLive(subscription);
      }
    } catch (error) {
      if (this.subscriptions.get(request.channel) === subscription) {
        this.dropSubscription(request.channel);
      }
      this.reject(request, error);
    } finally {
      this.inFlight -= 1;
      this.pump();
    }
  }

  /** Step 1: checks the request and starts holding live messages. */
  private openSubscription(
    request: SubscribeRequest,
  ): Subscription | RequestError {
    const { channel } = request;
    const { options } = this.node;
    if (this.subscriptions.has(channel)) {
      return new RequestError(ErrorCode.BadRequest, "already subscribed");
    }
    if (this.subscriptions.size >= options.maxSubscriptions) {
      return new RequestError(
        ErrorCode.LimitExceeded,
        `at most ${options.maxSubscriptions} subscriptions per connection`,
      );
    }
    const namespace = this.namespace(channel);
    if (!canSubscribe(this.identity, namespace, channel)) {
      return new RequestError(ErrorCode.Forbidden, "subscribe not granted");
    }

    const subscription: Subscription = {
      buffer: [],
      epoch: "",
      offset: 0,
      joinLeave: request.presence === true && namespace.joinLeave,
      presence: namespace.presence
        ? { channel, client: this.id, user: this.user, session: this.session }
        : undefined,
      positioned: deferred(),
    };
    this.subscriptions.set(channel, subscription);
    this.node.watch(channel, this, subscription);
    return subscription;
  }

  /**
   * Steps 2-4: the node's subscription is confirmed, one read gives the
   * position and what was missed, and the reply is built from them.
   */
  private async prepareSubscription(
    request: SubscribeRequest,
    subscription: Subscription,
  ): Promise<string> {
    const { channel, since } = request;
    const { options, engine } = this.node;
    let read: ReadOutcome;
    try {
      await this.node.interest(channel);
      try {
        read = await engine.read(channel, {
          since,
          limit: since ? options.recoveryMaxPublications : 0,
          reverse: false,
        });
      } finally {
        subscription.positioned?.resolve();
        subscription.positioned = undefined;
      }
      if (subscription.presence) {
        await engine.addPresence(subscription.presence);
        // Ended while the entry was being added: take it back, or it
        // would outlive the subscription.
        if (this.subscriptions.get(channel) !== subscription) {
          await engine.removePresence(subscription.presence, 0);
        }
      }
    } catch (error) {
      this.node.logger.warn(
        { connId: this.id, channel, err: String(error) },
        "subscribe failed",
      );
      throw new RequestError(ErrorCode.Unavailable, "channel unavailable");
    }

    const recovery = since && recover(since, read, options);
    const presence = request.presence
      ? await this.presenceJson(channel, this.namespace(channel))
      : undefined;
    subscription.epoch = read.epoch;
    subscription.offset = read.offset;
    return (
      `{"epoch":${JSON.stringify(read.epoch)},"offset":${read.offset}` +
      (recovery ? `,"recovered":${recovery.recovered}` : "") +
      (recovery?.recovered
        ? `,"publications":${publicationsJson(recovery.publications)}`
        : "") +
      (presence ? `,"presence":${presence}` : "") +
      "}"
    );
  }

  /** Steps 5-6: held messages above the reply's position, then live. */
  private goLive(subscription: Subscription): void {
    const held = subscription.buffer ?? [];
    subscription.buffer = undefined;
    for (const publication of held) {
      this.node.hub.deliverTo(this, subscription, publication);
    }
  }

  private async unsubscribe(request: UnsubscribeRequest): Promise<undefined> {
    this.dropSubscription(request.channel);
    return undefined;
  }

  /**
   * Ends a subscription locally. Its presence entry goes at once, or after
   * `linger` ms unless the same session subscribes again by then.
   */
  private dropSubscription(channel: string, linger = 0): boolean {
    const subscription = this.subscriptions.get(channel);
    if (!subscription) return false;
    this.subscriptions.delete(channel);
    subscription.positioned?.resolve();
    this.node.unwatch(channel, this);
    if (subscription.presence) {
      const { engine, logger } = this.node;
      engine.removePresence(subscription.presence, linger).catch((error) => {
        logger.warn(
          { connId: this.id, channel, err: String(error) },
          "presence removal failed",
        );
      });
    }
    return true;
  }

  private async publish(request: PublishRequest): Promise<string> {
    const { channel, key } = request;
    const { options, engine, metrics } = this.node;
    const namespace = this.namespace(channel);
    if (!canPublish(this.identity, namespace, channel)) {
      throw new RequestError(ErrorCode.Forbidden, "publish not granted");
    }
    this.checkRate();
    const pending = this.subscriptions.get(channel)?.positioned;
    if (pending) await pending.promise;

    const data = serialize(request.data);
    if (tooLarge(data, options.maxMessageSize)) {
      throw new RequestError(
        ErrorCode.TooLarge,
        `data over ${options.maxMessageSize} bytes`,
      );
    }
    const outcome = await engine.publish(channel, data, {
      key,
      publisher: { user: this.identity.user, client: this.id },
      historySize: namespace.historySize,
      historyTtl: namespace.historyTtl,
      idempotencyWindow: namespace.idempotencyWindow,
    });
    if (!outcome.duplicate) metrics.published.inc({ source: "websocket" });
    return JSON.stringify({
      epoch: outcome.epoch,
      offset: outcome.offset,
      duplicate: outcome.duplicate || undefined,
    });
  }

  private checkRate(): void {
    const { options } = this.node;
    this.limiter ??= new RateLimiter(
      options.publishRate,
      options.publishBurst,
      options.rateViolationWindow,
    );
    const retryAfter = this.limiter.take(Date.now());
    if (retryAfter === 0) return;
    if (this.limiter.recentRefusals > options.rateViolations) {
      // After this turn, so replies to requests in flight still go out.
      setImmediate(() =>
        this.close(CloseCode.RateLimited, "publish rate exceeded"),
      );
    }
    throw new RequestError(
      ErrorCode.RateLimited,
      "publish rate exceeded",
      retryAfter,
    );
  }

  private async presence(request: PresenceRequest): Promise<string> {
    const { channel } = request;
    const namespace = this.namespace(channel);
    if (!canSubscribe(this.identity, namespace, channel)) {
      throw new RequestError(ErrorCode.Forbidden, "presence not granted");
    }
    return this.presenceJson(channel, namespace);
  }

  private async presenceJson(
    channel: string,
    namespace: ResolvedNamespace,
  ): Promise<string> {
    if (!namespace.presence) return `{"members":[]}`;
    const list = await this.node.engine.presence(
      channel,
      this.node.options.presenceMaxMembers,
    );
    return JSON.stringify({
      members: list.members,
      truncated: list.truncated || undefined,
    });
  }

  private async history(request: HistoryRequest): Promise<string> {
    const { channel, since } = request;
    const { options, engine } = this.node;
    const limit = request.limit ?? 0;
    if (!canSubscribe(this.identity, this.namespace(channel), channel)) {
      throw new RequestError(ErrorCode.Forbidden, "history not granted");
    }
    if (limit > options.historyMaxLimit) {
      throw new RequestError(
        ErrorCode.BadRequest,
        `limit must be at most ${options.historyMaxLimit}`,
      );
    }
    const read = await engine.read(channel, {
      since,
      limit,
      reverse: request.reverse === true,
    });
    return historyJson(read, options.outboundBufferLimit / 2);
  }

  private async refresh(request: RefreshRequest): Promise<string> {
    if (this.node.options.open) {
      throw new RequestError(
        ErrorCode.BadRequest,
        "tokens are not used: the node runs in open mode",
      );
    }
    let identity: Identity;
    try {
      identity = await this.node.verifier.verify(request.token);
    } catch (error) {
      if (error instanceof TokenError && error.closeCode === 4419) {
        throw new RequestError(ErrorCode.Unauthorized, "token expired");
      }
      throw error;
    }
    if (identity.user !== this.identity.user) {
      throw new RequestError(
        ErrorCode.Forbidden,
        "a refreshed token must have the same sub",
      );
    }

    this.identity = identity;
    this.armExpiry();
    for (const channel of [...this.subscriptions.keys()]) {
      const namespace = this.namespace(channel);
      if (!canSubscribe(identity, namespace, channel)) {
        this.endSubscription(channel, "forbidden", "no longer granted", false);
      }
    }
    return JSON.stringify({ expiresIn: this.expiresIn() });
  }

  private namespace(channel: string): ResolvedNamespace {
    return namespaceOptions(this.node.options, namespaceOf(channel));
  }

  private expiresIn(): number | undefined {
    const { expiresAt } = this.identity;
    return expiresAt === undefined ? undefined : expiresAt - Date.now();
  }

  /**
   * Sets the deadline of the token: its `exp` plus the grace. The node's
   * tick closes the connection once it has passed, and so does any
   * request that comes after it; a timer per connection would cost each
   * idle connection a few hundred bytes.
   */
  private armExpiry(): void {
    const { expiresAt } = this.identity;
    this.deadline =
      expiresAt === undefined
        ? Infinity
        : expiresAt + this.node.options.tokenGrace;
    this.expireAt(Date.now());
  }

  /**
   * Closes with 4419 when the token's deadline is past at `now`; true
   * when it did.
   */
  expireAt(now: number): boolean {
    if (now < this.deadline || this.phase === "closing") return false;
    this.close(CloseCode.TokenExpired, "token expired");
    return true;
  }

  /** Logs a socket error; the close that follows does the rest. */
  socketError(error: Error): void {
    this.node.logger.debug(
      { connId: this.id, err: error.message },
      "websocket error",
    );
  }

  /** Called once when the socket has closed. */
  socketClosed(received: number): void {
    this.outbox.discard();
    this.closed(received);
  }

  private closed(received: number): void {
    this.phase = "closing";
    clearTimeout(this.connectTimer);
    const code = this.closedWith ?? received;

    // A client that lost its link, or was told to come back, keeps its
    // presence for a while, so its return causes no leave/join pair.
    const comingBack =
      code === CloseCode.Abnormal ||
      (this.closedWith !== undefined && closeAction(code).kind === "reconnect");
    const linger = comingBack ? this.node.options.presenceTtl : 0;
    for (const channel of [...this.subscriptions.keys()]) {
      this.dropSubscription(channel, linger);
    }
    this.node.forget(this, code);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((settle) => (resolve = settle));
  return { promise, resolve };
}

/** Whether `text` is over `max` bytes of UTF-8, counting only if needed. */
function tooLarge(text: string, max: number): boolean {
  if (text.length * 3 <= max) return false;
  return text.length > max || Buffer.byteLength(text) > max;
}
