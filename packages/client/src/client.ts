import {
  CloseCode,
  closeAction,
  isPosition,
  isValidChannel,
  isValidIdempotencyKey,
  type ConnectResult,
  type HistoryResult,
  type Json,
  type PresenceResult,
  type PublishResult,
  type RequestType,
} from "@switchboard/protocol";

import { Backoff } from "./backoff.js";
import { rejectionCloseCode, stopError } from "./close-policy.js";
import {
  Connection,
  serverError,
  type Push,
  type RequestBody,
  type ResultOf,
} from "./connection.js";
import { Emitter } from "./emitter.js";
import type {
  ClientEvents,
  ConnectionState,
  PublishOptions,
} from "./events.js";
import {
  ClosedError,
  ConnectionLostError,
  InvalidArgumentError,
  ServerError,
  SwitchboardClientError,
  TokenError,
  UnauthorizedError,
} from "./errors.js";
import { createLog, type Log } from "./log.js";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  CLOSE_WAIT_MS,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  STABLE_CONNECTION_MS,
  resolveClientOptions,
  type ClientOptions,
  type ResolvedClientOptions,
} from "./options.js";
import { isValidPush } from "./push.js";
import { onNetworkOnline } from "./network.js";
import { randomId } from "./random-id.js";
import {
  Subscription,
  type HistoryOptions,
  type SubscribeOptions,
  type SubscriptionHost,
} from "./subscription.js";
import { TokenRefresher } from "./token-refresh.js";
import { STRING_TOKEN_EXPIRED, TokenProvider } from "./token.js";
import { Waiters } from "./waiters.js";

/** Name the SDK gives in every `connect`. */
export const SDK_NAME = "@switchboard/client";

/** Version the SDK gives in every `connect`. */
export const SDK_VERSION = "0.1.0";

/**
 * A Switchboard client for browsers and Node. It connects when `connect()`
 * is called and then keeps connected: it reconnects with full-jitter
 * backoff, resubscribes with `since` so nothing is lost, refreshes its
 * token in-band and retries publishes under their idempotency key. It
 * stops only on `close()` or a close code that says retrying is useless.
 *
 * This file is a little over 500 lines on purpose: it is the one place the
 * connection state machine lives; its parts (transport, tokens, refresh,
 * ordering, subscriptions) each have their own module.
 */
export class SwitchboardClient extends Emitter<ClientEvents> {
  /** Presence identity of this client, sent in every `connect`. */
  readonly session: string;

  private readonly options: ResolvedClientOptions;
  private readonly log: Log;
  private readonly tokens: TokenProvider;
  private readonly refresher: TokenRefresher;
  private readonly backoff: Backoff;
  private readonly waiters = new Waiters();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly host: SubscriptionHost;

  private current: ConnectionState = "disconnected";
  private attempt = 0;
  private connection: Connection | undefined;
  private result: ConnectResult | undefined;
  private closedWith: ClosedError | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the current connection's `connect` succeeded. */
  private connectedAt: number | undefined;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private drainAt: number | undefined;
  private unwatchNetwork: (() => void) | undefined;

  constructor(options: ClientOptions) {
    super();
    this.options = resolveClientOptions(options);
    this.session = this.options.session ?? randomId();
    this.log = createLog(this.options.debug);
    const { token, connectTimeoutMs, minDelayMs, maxDelayMs } = this.options;
    this.tokens = new TokenProvider(token, connectTimeoutMs);
    this.refresher = new TokenRefresher(
      this.tokens,
      this.log,
      {
        stop: (error) => this.stop(error),
        error: (error) => this.emit("error", error),
      },
      minDelayMs,
      maxDelayMs,
    );
    this.backoff = new Backoff(
      minDelayMs,
      maxDelayMs,
      Math.random,
      this.options.reconnectSpreadMs,
    );
    this.host = {
      log: this.log,
      minDelayMs,
      maxDelayMs,
      historyLimit: () =>
        this.result?.limits.historyMaxLimit ?? DEFAULT_HISTORY_LIMIT,
      detach: (subscription) => this.detach(subscription),
      history: (channel, opts) => this.history(channel, opts),
      presence: (channel) => this.presence(channel),
    };
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** The result of the last successful `connect`: ids, limits, timings. */
  get connectResult(): ConnectResult | undefined {
    return this.result;
  }

  /**
   * Starts connecting, if not already, and resolves with the `connect`
   * result once connected; retries meanwhile. Rejects with the error that
   * stopped the client (e.g. `UnauthorizedError`) or a `ClosedError`.
   */
  async connect(): Promise<ConnectResult> {
    if (this.closedWith !== undefined) throw this.stopReason();
    if (this.current === "disconnected" && this.reconnectTimer === undefined) {
      this.unwatchNetwork ??= onNetworkOnline(this.onOnline);
      this.startAttempt();
    }

    try {
      await this.waiters.opened("connect");
    } catch {
      throw this.stopReason();
    }
    return this.result as ConnectResult;
  }

  /**
   * Stops for good: closes the socket, ends every subscription and rejects
   * every pending call with a `ClosedError`. Resolves once the socket
   * closed, or after `CLOSE_WAIT_MS`.
   */
  async close(): Promise<void> {
    const connection = this.connection;
    this.stop(undefined, "client closed");
    await connection?.socketClosed(CLOSE_WAIT_MS);
  }

  /**
   * Subscribes to `channel`, now or as soon as connected, and keeps the
   * subscription across reconnects. Throws `InvalidArgumentError` for a
   * bad name or a channel already subscribed.
   */
  subscribe(channel: string, options: SubscribeOptions = {}): Subscription {
    if (this.closedWith !== undefined) throw this.closedWith;
    checkChannel(channel);
    if (this.subscriptions.has(channel)) {
      throw new InvalidArgumentError(
        `already subscribed to "${channel}"; use getSubscription()`,
      );
    }
    if (options.since !== undefined && !isPosition(options.since)) {
      throw new InvalidArgumentError("since must be {epoch, offset}");
    }

    const subscription = new Subscription(channel, options, this.host);
    this.subscriptions.set(channel, subscription);
    if (this.connection?.usable === true) {
      subscription.attach(this.connection);
    }
    return subscription;
  }

  /** The live subscription to `channel`, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.subscriptions.get(channel);
  }

  /**
   * Publishes `data` (any JSON value) to `channel`. The idempotency key is
   * fixed now, so the publish is retried safely: after reconnects and on
   * temporary errors, while inside the server's idempotency window. Then
   * it rejects with a `TimeoutError`; other errors reject at once.
   */
  async publish(
    channel: string,
    data: unknown,
    options: PublishOptions = {},
  ): Promise<PublishResult> {
    checkChannel(channel);
    if (data === undefined) {
      throw new InvalidArgumentError("data must be a JSON value");
    }
    const key = options.key ?? randomId();
    if (!isValidIdempotencyKey(key)) {
      throw new InvalidArgumentError("key must be 1-64 of A-Za-z0-9_-");
    }
    // Refused here: over the frame limit the node would close the socket,
    // and a retry after each reconnect would close it again.
    const max = this.result?.limits.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const size = byteLength(JSON.stringify(data));
    if (size > max) {
      throw new InvalidArgumentError(
        `data is ${size} bytes, over the server's maxMessageSize of ${max}`,
      );
    }

    const createdAt = Date.now();
    return this.call(
      { type: "publish", channel, data: data as Json, key },
      `publish to "${channel}" within the idempotency window`,
      () => createdAt + this.idempotencyWindow,
    );
  }

  /** Stored messages of `channel`; needs subscribe permission. */
  async history(
    channel: string,
    options: HistoryOptions = {},
  ): Promise<HistoryResult> {
    checkChannel(channel);
    const { since, limit, reverse } = options;
    const deadline = Date.now() + this.options.requestTimeoutMs;
    return this.call(
      {
        type: "history",
        channel,
        ...(since !== undefined && { since }),
        ...(limit !== undefined && { limit }),
        ...(reverse !== undefined && { reverse }),
      },
      `history of "${channel}"`,
      () => deadline,
    );
  }

  /** Who is in `channel`, across all nodes; needs subscribe permission. */
  async presence(channel: string): Promise<PresenceResult> {
    checkChannel(channel);
    const deadline = Date.now() + this.options.requestTimeoutMs;
    return this.call(
      { type: "presence", channel },
      `presence of "${channel}"`,
      () => deadline,
    );
  }

  private get idempotencyWindow(): number {
    const window = this.result?.limits.idempotencyWindow;
    return window ?? DEFAULT_IDEMPOTENCY_WINDOW_MS;
  }

  // --- connecting ---

  private startAttempt(): void {
    this.reconnectTimer = undefined;
    this.attempt += 1;
    const attempt = this.attempt;
    this.log("connecting", { attempt });
    this.setState("connecting");
    if (attempt === this.attempt) void this.openAttempt(attempt);
  }

  private async openAttempt(attempt: number): Promise<void> {
    if (this.refresher.overdue && this.tokens.renewable) {
      // The token was due for a refresh that never happened: it may be
      // expired by now, so do not offer it again.
      this.refresher.forget();
      this.tokens.invalidate();
    }

    let token: string | undefined;
    try {
      token = await this.tokens.current();
    } catch (error) {
      if (attempt === this.attempt) this.tokenFailed(error);
      return;
    }
    if (attempt !== this.attempt) return;

    const connection: Connection = new Connection(
      attempt,
      {
        url: this.options.url,
        webSocket: this.options.webSocket,
        connectTimeoutMs: this.options.connectTimeoutMs,
        log: this.log,
      },
      {
        connected: (result) => this.connected(connection, result),
        rejected: (error) => this.rejected(connection, error),
        push: (push) => this.dispatch(connection, push),
        closed: (code, reason) => this.disconnected(connection, code, reason),
        failed: (error) => {
          if (connection.attempt === this.attempt) this.stop(error);
        },
      },
    );
    this.connection = connection;
    await connection.open({
      ...(token ? { token } : {}),
      session: this.session,
      client: { name: SDK_NAME, version: SDK_VERSION },
    });
  }

  private tokenFailed(error: unknown): void {
    if (error instanceof UnauthorizedError) {
      this.stop(error);
      return;
    }
    const failure =
      error instanceof SwitchboardClientError
        ? error
        : new TokenError("token function failed", { cause: error });
    this.emit("error", failure);
    this.scheduleReconnect(this.backoff.next());
  }

  private connected(connection: Connection, result: ConnectResult): void {
    if (connection.attempt !== this.attempt) return;
    this.result = result;
    this.connectedAt = Date.now();
    this.log("connected", { attempt: this.attempt, client: result.client });

    this.setState("connected");
    if (connection.attempt !== this.attempt) return;
    this.refresher.start(connection, result.expiresIn);
    for (const subscription of [...this.subscriptions.values()]) {
      subscription.attach(connection);
    }
    this.waiters.open();
    this.emit("connected", result);
  }

  /** `connect` got an `error` reply: act as on the matching close code. */
  private rejected(connection: Connection, error: ServerError): void {
    if (connection.attempt !== this.attempt) return;
    connection.abort(rejectionCloseCode(error.serverCode), error.message);
  }

  // --- disconnecting ---

  private disconnected(
    connection: Connection,
    code: number,
    reason: string,
  ): void {
    if (connection.attempt !== this.attempt) return;
    this.connection = undefined;
    this.refresher.stop();
    clearTimeout(this.drainTimer);
    this.waiters.shut();
    for (const subscription of this.subscriptions.values()) {
      subscription.detachConnection();
    }

    const action = closeAction(code);
    const stops =
      action.kind === "stop" ||
      (action.kind === "refresh-token" && !this.tokens.renewable);
    this.log("disconnected", { attempt: this.attempt, code, reason });
    this.setState("disconnected");
    this.emit("disconnected", { code, reason, reconnect: !stops });
    if (connection.attempt !== this.attempt) return;

    if (action.kind === "stop") {
      this.stop(stopError(code, reason));
      return;
    }
    if (action.kind === "refresh-token") {
      this.tokens.invalidate();
      if (stops) {
        this.stop(new UnauthorizedError(STRING_TOKEN_EXPIRED, code));
        return;
      }
    }

    const floor = action.kind === "reconnect" ? action.minDelayMs : 0;
    if (
      this.connectedAt !== undefined &&
      Date.now() - this.connectedAt >= STABLE_CONNECTION_MS
    ) {
      this.backoff.reset();
    }
    this.connectedAt = undefined;
    const drainAt = this.drainAt;
    this.drainAt = undefined;
    const delay =
      drainAt === undefined
        ? this.backoff.next(floor)
        : Math.max(floor, drainAt - Date.now());
    this.scheduleReconnect(delay);
  }

  private scheduleReconnect(delayMs: number): void {
    this.setState("disconnected");
    if (this.closedWith !== undefined) return;
    this.log("reconnecting", { delayMs });
    this.reconnectTimer = setTimeout(() => this.startAttempt(), delayMs);
  }

  private stop(error?: SwitchboardClientError, reason?: string): void {
    if (this.closedWith !== undefined) return;
    const closed =
      error === undefined
        ? new ClosedError()
        : new ClosedError(`client is closed: ${error.message}`, {
            cause: error,
          });
    this.closedWith = closed;
    this.attempt += 1;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.drainTimer);
    this.refresher.stop();
    this.unwatchNetwork?.();

    const connection = this.connection;
    this.connection = undefined;
    connection?.abort(1000, reason ?? "client stopped");
    this.waiters.fail(closed);
    for (const subscription of [...this.subscriptions.values()]) {
      subscription.close(closed);
    }

    this.log("closed", { error: error?.message });
    if (connection !== undefined && reason !== undefined) {
      this.emit("disconnected", { code: 1000, reason, reconnect: false });
    }
    if (error !== undefined) this.emit("error", error);
    this.setState("closed");
  }

  /** The error `connect()` rejects with once stopped. */
  private stopReason(): SwitchboardClientError {
    const closed = this.closedWith ?? new ClosedError();
    const cause = closed.cause;
    return cause instanceof SwitchboardClientError ? cause : closed;
  }

  // --- while connected ---

  private dispatch(connection: Connection, push: Push): void {
    if (connection.attempt !== this.attempt) return;
    if (!isValidPush(push)) {
      this.log("dropped a malformed or unknown push", {
        type: (push as { type: unknown }).type,
      });
      return;
    }

    switch (push.type) {
      case "message":
      case "join":
      case "leave":
      case "unsubscribed": {
        const subscription = this.subscriptions.get(push.channel);
        if (subscription === undefined) {
          this.log("dropped a push for no subscription", {
            type: push.type,
            channel: push.channel,
          });
          return;
        }
        subscription.receive(push);
        return;
      }
      case "reconnect":
        this.drain(connection, push.after, push.reason);
        return;
      case "error":
        this.emit("error", serverError(push));
        return;
    }
  }

  /** The node is draining: move to another one after `after` ms. */
  private drain(connection: Connection, after: number, reason: string): void {
    const delay = Math.max(0, after);
    this.log("node draining", { after: delay, reason });
    this.drainAt = Date.now() + delay;
    clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(() => {
      if (connection.attempt !== this.attempt) return;
      connection.abort(CloseCode.GoingAway, `draining: ${reason}`);
    }, delay);
  }

  // --- requests ---

  /**
   * Sends a request once connected, again after each lost connection and,
   * with backoff, after temporary errors, until `deadline()`.
   */
  private async call<T extends RequestType>(
    body: RequestBody<T>,
    what: string,
    deadline: () => number,
  ): Promise<ResultOf[T]> {
    const retry = new Backoff(this.options.minDelayMs, this.options.maxDelayMs);
    for (;;) {
      await this.waiters.opened(what, deadline());
      const connection = this.connection;
      if (connection === undefined) continue;

      try {
        return await this.waiters.race(connection.send(body), what, deadline());
      } catch (error) {
        if (error instanceof ConnectionLostError) continue;
        if (!(error instanceof ServerError) || !error.temporary) throw error;

        const delay = Math.max(error.retryAfter ?? 0, retry.next());
        this.log("request failed, retrying", {
          type: body.type,
          code: error.serverCode,
          delay,
        });
        await this.waiters.sleep(delay, what, deadline());
      }
    }
  }

  private detach(subscription: Subscription): void {
    if (this.subscriptions.get(subscription.channel) === subscription) {
      this.subscriptions.delete(subscription.channel);
    }
  }

  private setState(to: ConnectionState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.emit("state", { from, to });
  }

  private readonly onOnline = (): void => {
    if (this.reconnectTimer === undefined) return;
    clearTimeout(this.reconnectTimer);
    this.log("network online, reconnecting now");
    this.startAttempt();
  };
}

function checkChannel(channel: string): void {
  if (isValidChannel(channel)) return;
  throw new InvalidArgumentError(
    `channel must be 1-200 of A-Za-z0-9_-:.@=/, got "${String(channel)}"`,
  );
}

/** UTF-8 length of `text`. */
function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}
