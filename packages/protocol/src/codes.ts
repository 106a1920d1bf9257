/**
 * Error codes carried by `error` replies. Stable strings: clients branch on
 * them, never on the message text.
 */
export const ErrorCode = {
  BadRequest: "bad_request",
  Unauthorized: "unauthorized",
  Forbidden: "forbidden",
  NotFound: "not_found",
  TooLarge: "too_large",
  RateLimited: "rate_limited",
  LimitExceeded: "limit_exceeded",
  Unavailable: "unavailable",
  Internal: "internal",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const TEMPORARY_ERRORS: ReadonlySet<string> = new Set<ErrorCode>([
  ErrorCode.Unavailable,
  ErrorCode.Internal,
  ErrorCode.RateLimited,
]);

/** Whether a request that failed with `code` may be retried with backoff. */
export function isTemporaryError(code: string): boolean {
  return TEMPORARY_ERRORS.has(code);
}

/**
 * WebSocket close codes the server uses. RFC 6455 codes keep their standard
 * meaning; the 4xxx range echoes HTTP statuses.
 */
export const CloseCode = {
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  MessageTooBig: 1009,
  InternalError: 1011,
  Disconnected: 4000,
  DisconnectedMayReturn: 4009,
  BadRequest: 4400,
  Unauthorized: 4401,
  Forbidden: 4403,
  ConnectTimeout: 4408,
  InsufficientState: 4410,
  TokenExpired: 4419,
  RateLimited: 4429,
  Unavailable: 4503,
  SlowConsumer: 4508,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * What a client does after a close:
 * - `reconnect`: with backoff, then resubscribe and recover;
 * - `reconnect-slow`: the same, but wait at least `minDelayMs` first;
 * - `refresh-token`: get a new token from the app, then reconnect;
 * - `stop`: do not reconnect, surface the reason to the app.
 */
export type CloseAction =
  | { readonly kind: "reconnect"; readonly minDelayMs: number }
  | { readonly kind: "refresh-token" }
  | { readonly kind: "stop" };

/** Servers that shed load ask clients to stay away at least this long. */
export const SHED_LOAD_MIN_DELAY_MS = 5_000;

const RECONNECT: CloseAction = { kind: "reconnect", minDelayMs: 0 };
const RECONNECT_SLOW: CloseAction = {
  kind: "reconnect",
  minDelayMs: SHED_LOAD_MIN_DELAY_MS,
};

const CLOSE_ACTIONS: ReadonlyMap<number, CloseAction> = new Map<
  number,
  CloseAction
>([
  // Disconnected on purpose: coming back would be refused again.
  [CloseCode.Disconnected, { kind: "stop" }],
  // A bad or missing token does not get better by retrying.
  [CloseCode.Unauthorized, { kind: "stop" }],
  [CloseCode.Forbidden, { kind: "stop" }],
  // Reusing the expired token would loop; the app must mint a new one.
  [CloseCode.TokenExpired, { kind: "refresh-token" }],
  // The node is overloaded: an immediate retry only adds to the herd.
  [CloseCode.RateLimited, RECONNECT_SLOW],
  [CloseCode.Unavailable, RECONNECT_SLOW],
]);

/** The client's action for a close code; unknown codes reconnect. */
export function closeAction(code: number): CloseAction {
  return CLOSE_ACTIONS.get(code) ?? RECONNECT;
}

/** Close reasons must fit in one control frame (RFC 6455, 5.5). */
export const MAX_CLOSE_REASON_BYTES = 123;
