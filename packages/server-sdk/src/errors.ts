/**
 * Stable codes of the server SDK's errors. Apps branch on `error.code`,
 * never on the message text.
 */
export type ServerSdkErrorCode =
  | "SB_ERR_INVALID_ARGUMENT"
  | "SB_ERR_API"
  | "SB_ERR_NETWORK"
  | "SB_ERR_TIMEOUT"
  | "SB_ERR_KEY";

/** Base class of every error the server SDK throws or rejects with. */
export class ServerSdkError extends Error {
  override readonly name: string = "ServerSdkError";

  constructor(
    readonly code: ServerSdkErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A bad argument or option; nothing was sent. */
export class InvalidArgumentError extends ServerSdkError {
  override readonly name = "InvalidArgumentError";

  constructor(message: string) {
    super("SB_ERR_INVALID_ARGUMENT", message);
  }
}

/**
 * The node refused the request. `status` is the HTTP status and
 * `serverCode` the node's error code (`bad_request`, `unauthorized`,
 * `too_large`, `unavailable`, ...).
 */
export class ApiError extends ServerSdkError {
  override readonly name = "ApiError";

  constructor(
    readonly status: number,
    readonly serverCode: string,
    message: string,
  ) {
    super("SB_ERR_API", `${serverCode}: ${message}`);
  }

  /** Whether the same request may succeed later (503, 429, 5xx). */
  get temporary(): boolean {
    return this.status === 429 || this.status >= 500;
  }
}

/** The node could not be reached, or Redis refused the command. */
export class NetworkError extends ServerSdkError {
  override readonly name = "NetworkError";

  constructor(message: string, options?: ErrorOptions) {
    super("SB_ERR_NETWORK", message, options);
  }
}

/** No answer within `timeoutMs`; the request may or may not have run. */
export class TimeoutError extends ServerSdkError {
  override readonly name = "TimeoutError";

  constructor(message: string) {
    super("SB_ERR_TIMEOUT", message);
  }
}

/** A signing key that cannot be used for the chosen algorithm. */
export class KeyError extends ServerSdkError {
  override readonly name = "KeyError";

  constructor(message: string, options?: ErrorOptions) {
    super("SB_ERR_KEY", message, options);
  }
}
