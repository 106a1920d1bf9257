import type { ErrorCode } from "@switchboard/protocol";

/**
 * Stable codes of the client's errors. Apps branch on `error.code`, never on
 * the message text.
 */
export type ClientErrorCode =
  | "SB_ERR_SERVER"
  | "SB_ERR_TIMEOUT"
  | "SB_ERR_CLOSED"
  | "SB_ERR_UNAUTHORIZED"
  | "SB_ERR_FORBIDDEN"
  | "SB_ERR_DISCONNECTED"
  | "SB_ERR_TOKEN"
  | "SB_ERR_TRANSPORT"
  | "SB_ERR_INVALID_ARGUMENT"
  | "SB_ERR_UNSUBSCRIBED"
  | "SB_ERR_CONNECTION_LOST";

/** Base class of every error the client SDK throws, rejects or emits. */
export class SwitchboardClientError extends Error {
  override readonly name: string = "SwitchboardClientError";

  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The server answered a request with an `error` reply. */
export class ServerError extends SwitchboardClientError {
  override readonly name = "ServerError";

  /**
   * @param serverCode the server's error code, e.g. `forbidden`
   * @param temporary whether the request may succeed when retried later
   * @param retryAfter how long to wait before retrying, in ms, if advised
   */
  constructor(
    readonly serverCode: ErrorCode,
    message: string,
    readonly temporary: boolean,
    readonly retryAfter?: number,
  ) {
    super("SB_ERR_SERVER", `${serverCode}: ${message}`);
  }
}

/** A request was not answered in time, or a publish left its window. */
export class TimeoutError extends SwitchboardClientError {
  override readonly name = "TimeoutError";

  constructor(message: string) {
    super("SB_ERR_TIMEOUT", message);
  }
}

/**
 * The client is closed: by `close()`, or for good after a close code that
 * stops it. `cause` holds the error that stopped it, if any.
 */
export class ClosedError extends SwitchboardClientError {
  override readonly name = "ClosedError";

  constructor(message = "client is closed", options?: ErrorOptions) {
    super("SB_ERR_CLOSED", message, options);
  }
}

/**
 * The server refused the token (close 4401), or it expired and no token
 * function can mint another (close 4419). A token function may throw it to
 * stop the client for good, e.g. when the user logged out.
 */
export class UnauthorizedError extends SwitchboardClientError {
  override readonly name = "UnauthorizedError";

  constructor(
    message: string,
    readonly closeCode?: number,
  ) {
    super("SB_ERR_UNAUTHORIZED", message);
  }
}

/** The server refused the connection for good (close 4403). */
export class ForbiddenError extends SwitchboardClientError {
  override readonly name = "ForbiddenError";

  constructor(message: string) {
    super("SB_ERR_FORBIDDEN", message);
  }
}

/** The server disconnected the client and asked it not to return (4000). */
export class DisconnectedError extends SwitchboardClientError {
  override readonly name = "DisconnectedError";

  constructor(message: string) {
    super("SB_ERR_DISCONNECTED", message);
  }
}

/** The app's token function failed; the client retries with backoff. */
export class TokenError extends SwitchboardClientError {
  override readonly name = "TokenError";

  constructor(message: string, options?: ErrorOptions) {
    super("SB_ERR_TOKEN", message, options);
  }
}

/** No WebSocket implementation could be found or constructed. */
export class TransportError extends SwitchboardClientError {
  override readonly name = "TransportError";

  constructor(message: string, options?: ErrorOptions) {
    super("SB_ERR_TRANSPORT", message, options);
  }
}

/** An argument or option has a value the client cannot work with. */
export class InvalidArgumentError extends SwitchboardClientError {
  override readonly name = "InvalidArgumentError";

  constructor(message: string) {
    super("SB_ERR_INVALID_ARGUMENT", message);
  }
}

/** The subscription ended before it went live, e.g. the app left it. */
export class UnsubscribedError extends SwitchboardClientError {
  override readonly name = "UnsubscribedError";

  constructor(message: string) {
    super("SB_ERR_UNSUBSCRIBED", message);
  }
}

/**
 * The connection carrying a request went away before its reply. The client
 * retries such requests on the next connection, so apps never see it.
 *
 * @internal
 */
export class ConnectionLostError extends SwitchboardClientError {
  override readonly name = "ConnectionLostError";

  constructor() {
    super("SB_ERR_CONNECTION_LOST", "connection lost before the reply");
  }
}
