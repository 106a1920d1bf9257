import {
  MAX_CLOSE_REASON_BYTES,
  isTemporaryError,
  type ErrorCode,
} from "@switchboard/protocol";

import type { Publication } from "./engine.js";

/**
 * Server frames are built as strings around already-serialized parts, so
 * `data` is never parsed or stringified again on the way out.
 */

/** An `ok` reply; `result` is serialized JSON or absent. */
export function okFrame(id: number, result?: string): string {
  return result === undefined
    ? `{"type":"ok","id":${id}}`
    : `{"type":"ok","id":${id},"result":${result}}`;
}

/** An `error` reply, or a connection-level error without `id`. */
export function errorFrame(
  id: number | undefined,
  code: ErrorCode,
  message: string,
  retryAfter?: number,
): string {
  return JSON.stringify({
    type: "error",
    id,
    code,
    message,
    temporary: isTemporaryError(code),
    retryAfter,
  });
}

/** A `message` push. */
export function messageFrame(publication: Publication): string {
  const { channel, epoch, offset, data, publisher } = publication;
  const head =
    `{"type":"message","channel":${JSON.stringify(channel)},` +
    `"epoch":${JSON.stringify(epoch)},"offset":${offset},"data":${data}`;
  return publisher === undefined
    ? `${head}}`
    : `${head},"publisher":${JSON.stringify(publisher)}}`;
}

/** A list of publications as a JSON array of `message` pushes. */
export function publicationsJson(publications: readonly Publication[]): string {
  return `[${publications.map(messageFrame).join(",")}]`;
}

/** Cuts a close reason to what fits a control frame, on a code point. */
export function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  let cut = reason.slice(0, MAX_CLOSE_REASON_BYTES);
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES) {
    cut = cut.slice(0, -1);
  }
  return cut;
}
