import type { ErrorCode } from "@switchboard/protocol";

/** A request failed in a way the client is told about with `error`. */
export class RequestError extends Error {
  override readonly name = "RequestError";

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Milliseconds before a retry may succeed, for `rate_limited`. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}
