import type {
  ConnectRequest,
  ConnectResult,
  ErrorReply,
  HistoryResult,
  PresenceResult,
  PublishResult,
  Request,
  RequestType,
  ServerMessage,
  SubscribeResult,
} from "@switchboard/protocol";

import {
  ConnectionLostError,
  InvalidArgumentError,
  ServerError,
  type SwitchboardClientError,
} from "./errors.js";
import { LOCAL_ABNORMAL_CLOSE } from "./close-policy.js";
import { Heartbeat } from "./heartbeat.js";
import type { Log } from "./log.js";
import {
  openSocket,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport.js";

/** Result of `refresh`; `expiresIn` when the server tells it. */
export interface RefreshResult {
  readonly expiresIn?: number;
}

/** The result type of each request type. */
export interface ResultOf {
  connect: ConnectResult;
  subscribe: SubscribeResult;
  unsubscribe: undefined;
  publish: PublishResult;
  presence: PresenceResult;
  history: HistoryResult;
  ping: undefined;
  refresh: RefreshResult | undefined;
}

/** A request of type `T` without its `id`, which the connection assigns. */
export type RequestBody<T extends RequestType = RequestType> =
  Request extends infer R
    ? R extends { type: T }
      ? Omit<R, "id">
      : never
    : never;

/** How a request ended: its result, or why it failed. */
export type Outcome<T> =
  | { readonly ok: true; readonly result: T }
  | { readonly ok: false; readonly error: SwitchboardClientError };

/** A push: any server message that is not a reply to a request. */
export type Push = Exclude<ServerMessage, { type: "ok" }>;

/** What a connection reports to the client, each at most once but `push`. */
export interface ConnectionHandlers {
  /** The `connect` request succeeded: the connection is usable. */
  connected(result: ConnectResult): void;
  /** The `connect` request got an `error` reply. */
  rejected(error: ServerError): void;
  /** A push arrived, after `connected`. */
  push(message: Push): void;
  /** The socket closed, or the client gave up on it. Called once. */
  closed(code: number, reason: string): void;
  /** No socket could be created at all; retrying will not help. */
  failed(error: SwitchboardClientError): void;
}

/** Settings of one connection attempt. */
export interface ConnectionSettings {
  readonly url: string;
  readonly webSocket: WebSocketConstructor | undefined;
  readonly connectTimeoutMs: number;
  readonly log: Log;
}

type Callback = (outcome: Outcome<unknown>) => void;

/** Ids are unique per client process, so unique per connection too. */
let lastRequestId = 0;

/**
 * One transport attempt: a socket, its `connect` handshake, its requests
 * in flight and its heartbeat. It never reconnects; the client makes a new
 * one, with a new `attempt` id, and ignores whatever the old one reports.
 *
 * Replies are handed to their callbacks synchronously, in arrival order:
 * `ws` emits several frames of one TCP read in the same tick, so a
 * `subscribe` reply must be applied before the `message` right behind it.
 */
export class Connection {
  private socket: WebSocketLike | undefined;
  private readonly pending = new Map<number, Callback>();
  private heartbeat: Heartbeat | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private live = false;
  private done = false;
  private socketDone = false;
  private readonly socketListeners = new Set<() => void>();

  constructor(
    /** The client's attempt id of this connection. */
    readonly attempt: number,
    private readonly settings: ConnectionSettings,
    private readonly handlers: ConnectionHandlers,
  ) {}

  /** Whether the `connect` reply arrived and the socket is still open. */
  get usable(): boolean {
    return this.live && !this.done;
  }

  /** Opens the socket and sends `connect` with `frame` once it is open. */
  async open(frame: Omit<ConnectRequest, "id" | "type">): Promise<void> {
    this.connectTimer = setTimeout(
      () => this.abort(LOCAL_ABNORMAL_CLOSE, "connect timeout"),
      this.settings.connectTimeoutMs,
    );

    let socket: WebSocketLike;
    try {
      socket = await openSocket(this.settings.url, this.settings.webSocket);
    } catch (error) {
      if (this.done) return;
      this.finish();
      this.handlers.failed(error as SwitchboardClientError);
      return;
    }
    if (this.done) {
      socket.onerror = () => {};
      socket.close(1000, "abandoned");
      return;
    }

    this.socket = socket;
    socket.onopen = () => this.opened(frame);
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      this.socketClosedNow();
      this.close(event.code, event.reason);
    };
    // An `error` event is always followed by `close`, which reports it.
    socket.onerror = () => this.settings.log("socket error");
  }

  /** Sends a request; `callback` gets its outcome, synchronously. */
  request<T extends RequestType>(
    body: RequestBody<T>,
    callback: (outcome: Outcome<ResultOf[T]>) => void,
  ): void {
    if (this.done || this.socket === undefined) {
      queueMicrotask(() => callback(lost()));
      return;
    }

    lastRequestId += 1;
    const id = lastRequestId;
    let text: string;
    try {
      text = JSON.stringify({ ...body, id });
    } catch (error) {
      const message = `cannot serialize ${body.type}: ${String(error)}`;
      const failure = new InvalidArgumentError(message);
      queueMicrotask(() => callback({ ok: false, error: failure }));
      return;
    }

    this.pending.set(id, callback as Callback);
    try {
      this.socket.send(text);
    } catch (error) {
      // Only a socket that is not open throws; its close event follows
      // and fails every pending request, this one included.
      this.settings.log("send failed", { error: String(error) });
    }
  }

  /** Like `request`, as a promise. */
  send<T extends RequestType>(body: RequestBody<T>): Promise<ResultOf[T]> {
    return new Promise((resolve, reject) => {
      this.request(body, (outcome) => {
        if (outcome.ok) resolve(outcome.result);
        else reject(outcome.error);
      });
    });
  }

  /**
   * Resolves once the socket finished its closing handshake, or has none
   * to finish, or after `waitMs`, whichever comes first.
   */
  socketClosed(waitMs: number): Promise<void> {
    if (this.socketDone || this.socket === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, waitMs);
      const listeners = this.socketListeners;
      function done(): void {
        clearTimeout(timer);
        listeners.delete(done);
        resolve();
      }
      listeners.add(done);
    });
  }

  /**
   * Gives up on the connection: closes the socket and reports `closed`
   * with `code` at once, without waiting for the closing handshake.
   */
  abort(code: number, reason: string): void {
    if (this.done) return;
    try {
      this.socket?.close(1000, reason);
    } catch (error) {
      this.settings.log("socket close failed", { error });
    }
    this.close(code, reason);
  }

  private socketClosedNow(): void {
    this.socketDone = true;
    for (const listener of [...this.socketListeners]) listener();
  }

  private opened(frame: Omit<ConnectRequest, "id" | "type">): void {
    if (this.done) return;
    const protocol = this.socket?.protocol;
    this.settings.log("socket open", { attempt: this.attempt, protocol });

    this.request<"connect">({ type: "connect", ...frame }, (outcome) => {
      if (this.done) return;
      clearTimeout(this.connectTimer);
      if (!outcome.ok) {
        if (outcome.error instanceof ServerError) {
          this.handlers.rejected(outcome.error);
        }
        return;
      }
      this.live = true;
      this.startHeartbeat(outcome.result);
      this.handlers.connected(outcome.result);
    });
  }

  private startHeartbeat(result: ConnectResult): void {
    this.heartbeat = new Heartbeat(
      result.heartbeat,
      result.pongTimeout,
      () => this.request<"ping">({ type: "ping" }, () => {}),
      () => this.abort(LOCAL_ABNORMAL_CLOSE, "heartbeat timeout"),
    );
    this.heartbeat.start();
  }

  private receive(data: unknown): void {
    if (this.done) return;
    this.heartbeat?.received();

    const message = parse(data);
    if (message === undefined) {
      this.settings.log("dropped a frame that is not a JSON object");
      return;
    }

    if (message.type === "ok" || (message.type === "error" && message.id)) {
      this.reply(message);
      return;
    }
    if (!this.live) {
      this.settings.log("dropped a push before connect", {
        type: message.type,
      });
      return;
    }
    this.handlers.push(message as Push);
  }

  private reply(message: ServerMessage): void {
    const id = (message as { id?: number }).id;
    const callback = id === undefined ? undefined : this.pending.get(id);
    if (callback === undefined) {
      this.settings.log("dropped a reply to no request", { id });
      return;
    }

    this.pending.delete(id as number);
    if (message.type === "ok") {
      callback({ ok: true, result: message.result });
    } else {
      callback({ ok: false, error: serverError(message as ErrorReply) });
    }
  }

  /** The socket closed, or the client gave up on it: report once. */
  private close(code: number, reason: string): void {
    if (this.done) return;
    this.finish();

    for (const callback of this.pending.values()) callback(lost());
    this.pending.clear();
    this.handlers.closed(code, reason);
  }

  private finish(): void {
    this.done = true;
    this.live = false;
    clearTimeout(this.connectTimer);
    this.heartbeat?.stop();
  }
}

/** The typed error of an `error` reply. */
export function serverError(reply: ErrorReply): ServerError {
  return new ServerError(
    reply.code,
    reply.message,
    reply.temporary === true,
    reply.retryAfter,
  );
}

function lost(): Outcome<never> {
  return { ok: false, error: new ConnectionLostError() };
}

function parse(data: unknown): ServerMessage | undefined {
  if (typeof data !== "string") return undefined;
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    return undefined;
  }
  const ok =
    typeof frame === "object" &&
    frame !== null &&
    !Array.isArray(frame) &&
    typeof (frame as { type?: unknown }).type === "string";
  return ok ? (frame as ServerMessage) : undefined;
}
