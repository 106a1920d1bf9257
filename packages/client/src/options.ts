import { InvalidArgumentError } from "./errors.js";
import type { DebugLogger } from "./log.js";
import type { TokenFunction } from "./token.js";
import type { WebSocketConstructor } from "./transport.js";

/** Ceiling of the first reconnect delay: 500 ms, doubled each attempt. */
export const DEFAULT_MIN_DELAY_MS = 500;

/** Reconnect delays never grow past 20 s (plus any server-advised floor). */
export const DEFAULT_MAX_DELAY_MS = 20_000;

/**
 * The first reconnect after a lost connection waits up to 6 s: a node or
 * proxy that drops every client at once sees about a sixth of them come
 * back in each second, not all of them in the first.
 */
export const DEFAULT_RECONNECT_SPREAD_MS = 6_000;

/** From opening a socket to the `connect` reply: 10 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** `history` and `presence` calls, waiting for a connection included: 10 s. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * How long a publish is retried before the first `connect` result names the
 * server's `idempotencyWindow`: 5 min, the protocol's default.
 */
export const DEFAULT_IDEMPOTENCY_WINDOW_MS = 300_000;

/**
 * Messages per gap-recovery `history` request before the first `connect`
 * result names the server's `historyMaxLimit`: 300, the protocol's default.
 */
export const DEFAULT_HISTORY_LIMIT = 300;

/**
 * The server's largest `data`, before a `connect` result says otherwise:
 * DESIGN's default, 64 KiB.
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024;

/**
 * A connection that stayed up this long resets the backoff; one closed
 * sooner (a node that accepts and drops) keeps doubling it.
 */
export const STABLE_CONNECTION_MS = 10_000;

/** Tokens are refreshed in-band at 80% of the connect's `expiresIn`. */
export const TOKEN_REFRESH_RATIO = 0.8;

/** How long `close()` waits for the socket's closing handshake: 1 s. */
export const CLOSE_WAIT_MS = 1_000;

const SESSION_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Options of a `SwitchboardClient`. Durations are in milliseconds. */
export interface ClientOptions {
  /**
   * The node's WebSocket endpoint, e.g. `wss://example.com/ws`. `http(s)`
   * URLs are turned into `ws(s)`. Never put a token in it: tokens travel in
   * the `connect` frame only.
   */
  url: string;
  /**
   * A token, or a function returning one. A function is called again for
   * every in-band refresh and after the server closed with 4419 (token
   * expired); a string that expires stops the client. Omit it for open
   * mode.
   * @default undefined (anonymous)
   */
  token?: string | TokenFunction;
  /**
   * Presence identity of an anonymous client, sent in every `connect`; 1-64
   * of `A-Za-z0-9_-`. Pass a stored one to keep the identity across page
   * loads.
   * @default a random id generated once per client
   */
  session?: string;
  /**
   * Ceiling of the first reconnect delay; each failed attempt doubles it,
   * and the delay is uniform below the ceiling (full jitter).
   * @default DEFAULT_MIN_DELAY_MS (500 ms)
   */
  minDelayMs?: number;
  /**
   * Largest ceiling of the reconnect delay. A server-advised floor (5 s
   * after close 4429 or 4503) comes on top of it.
   * @default DEFAULT_MAX_DELAY_MS (20 s)
   */
  maxDelayMs?: number;
  /**
   * Ceiling of the first reconnect delay after a connection is lost
   * without the server saying when to return (a node killed, a proxy
   * restarted, a network cut): the delay is uniform in [0, this), so a
   * crowd dropped together comes back spread out. Later attempts follow
   * `minDelayMs`. A browser's `online` event reconnects at once, and a
   * drain's `reconnect` push sets its own time.
   * @default DEFAULT_RECONNECT_SPREAD_MS (6 s)
   */
  reconnectSpreadMs?: number;
  /**
   * Time from opening a socket to the `connect` reply; past it the attempt
   * is abandoned and retried with backoff.
   * @default DEFAULT_CONNECT_TIMEOUT_MS (10 s)
   */
  connectTimeoutMs?: number;
  /**
   * Time a `history` or `presence` call may take, waiting for a connection
   * included; past it the call rejects with `TimeoutError`. Publishes use
   * the server's idempotency window instead.
   * @default DEFAULT_REQUEST_TIMEOUT_MS (10 s)
   */
  requestTimeoutMs?: number;
  /**
   * Debug logging: `true` for `console.debug`, or a function receiving each
   * line. Nothing is logged when unset.
   * @default undefined (silent)
   */
  debug?: boolean | DebugLogger;
  /**
   * The WebSocket class to use.
   * @default the global `WebSocket`, else the `ws` package (Node 20)
   */
  webSocket?: WebSocketConstructor;
}

/** Client options after defaults and checks. */
export interface ResolvedClientOptions {
  readonly url: string;
  readonly token: string | TokenFunction | undefined;
  readonly session: string | undefined;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly reconnectSpreadMs: number;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly debug: boolean | DebugLogger | undefined;
  readonly webSocket: WebSocketConstructor | undefined;
}

/**
 * Merges `options` over the defaults and checks them. Throws an
 * `InvalidArgumentError` naming the first bad option.
 */
export function resolveClientOptions(
  options: ClientOptions,
): ResolvedClientOptions {
  const resolved: ResolvedClientOptions = {
    url: webSocketUrl(options.url),
    token: options.token,
    session: options.session,
    minDelayMs: options.minDelayMs ?? DEFAULT_MIN_DELAY_MS,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS,
    reconnectSpreadMs: options.reconnectSpreadMs ?? DEFAULT_RECONNECT_SPREAD_MS,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    debug: options.debug,
    webSocket: options.webSocket,
  };

  for (const name of [
    "minDelayMs",
    "maxDelayMs",
    "reconnectSpreadMs",
    "connectTimeoutMs",
    "requestTimeoutMs",
  ] as const) {
    const value = resolved[name];
    if (!Number.isFinite(value) || value <= 0) {
      throw new InvalidArgumentError(`${name} must be a positive number`);
    }
  }
  if (resolved.maxDelayMs < resolved.minDelayMs) {
    throw new InvalidArgumentError("maxDelayMs must be at least minDelayMs");
  }
  if (
    resolved.session !== undefined &&
    !SESSION_PATTERN.test(resolved.session)
  ) {
    throw new InvalidArgumentError("session must be 1-64 of A-Za-z0-9_-");
  }
  const token = resolved.token;
  if (token !== undefined && !["string", "function"].includes(typeof token)) {
    throw new InvalidArgumentError("token must be a string or a function");
  }
  return resolved;
}

/** Checks `url` and turns `http(s)` into `ws(s)`. */
function webSocketUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`url must be a ws(s) URL, got "${url}"`);
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new InvalidArgumentError(`url must be a ws(s) URL, got "${url}"`);
  }
  return parsed.toString();
}
