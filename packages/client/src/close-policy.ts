import { CloseCode, ErrorCode } from "@switchboard/protocol";

import {
  DisconnectedError,
  ForbiddenError,
  UnauthorizedError,
  type SwitchboardClientError,
} from "./errors.js";

/** Close code reported for connections the client itself gave up on. */
export const LOCAL_ABNORMAL_CLOSE = 1006;

/**
 * An `error` reply to `connect` is acted on like the close code that means
 * the same, so both paths share protocol's `closeAction` table.
 */
const REJECTION_CLOSE_CODES: Readonly<Record<string, number>> = {
  [ErrorCode.Unauthorized]: CloseCode.Unauthorized,
  [ErrorCode.Forbidden]: CloseCode.Forbidden,
  [ErrorCode.RateLimited]: CloseCode.RateLimited,
  [ErrorCode.Unavailable]: CloseCode.Unavailable,
};

/** The close code that stands for an `error` reply to `connect`. */
export function rejectionCloseCode(serverCode: string): number {
  return REJECTION_CLOSE_CODES[serverCode] ?? LOCAL_ABNORMAL_CLOSE;
}

/** The error surfaced when a close code stops the client. */
export function stopError(
  code: number,
  reason: string,
): SwitchboardClientError {
  const detail = reason === "" ? `close ${code}` : `${reason} (${code})`;
  if (code === CloseCode.Unauthorized) {
    return new UnauthorizedError(`unauthorized: ${detail}`, code);
  }
  if (code === CloseCode.Forbidden) {
    return new ForbiddenError(`forbidden: ${detail}`);
  }
  return new DisconnectedError(`disconnected by the server: ${detail}`);
}
