import {
  ErrorCode,
  MAX_CLOSE_REASON_BYTES,
  isTemporaryError,
} from "@switchboard/protocol";

import type { Publication, ReadOutcome } from "./engine.js";
import { RequestError } from "./request-error.js";

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

/**
 * An unmasked, final WebSocket text frame (RFC 6455 section 5.2) holding
 * `payload`, in one buffer, so a frame built once can be written to any
 * number of sockets as it is.
 */
export function textFrame(payload: string | Buffer): Buffer {
  const length =
    typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + length);
  frame[0] = FIN_TEXT;
  if (head === 2) {
    frame[1] = length;
  } else if (head === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (typeof payload === "string") frame.write(payload, head);
  else payload.copy(frame, head);
  return frame;
}

/** FIN bit and the text opcode: a whole text message in one frame. */
const FIN_TEXT = 0x81;

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

/**
 * Serializes `data` once, for storing and sending as is. Data nested too
 * deeply to serialize is a bad request, not a failure of the node.
 */
export function serialize(data: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch {
    throw new RequestError(ErrorCode.BadRequest, "data cannot be serialized");
  }
  if (text === undefined) {
    throw new RequestError(ErrorCode.BadRequest, "data is not JSON");
  }
  return text;
}

/**
 * The leading publications whose data fits in `maxBytes`, at least one,
 * so a page of history never outgrows the connection's buffer.
 */
export function firstBytes(
  publications: readonly Publication[],
  maxBytes: number,
): readonly Publication[] {
  let bytes = 0;
  for (let i = 0; i < publications.length; i++) {
    bytes += publications[i]!.data.length;
    if (bytes > maxBytes) return publications.slice(0, Math.max(1, i));
  }
  return publications;
}

/** A `history` result: the position and a page within `maxBytes`. */
export function historyJson(read: ReadOutcome, maxBytes: number): string {
  const page = firstBytes(read.publications, maxBytes);
  return (
    `{"epoch":${JSON.stringify(read.epoch)},"offset":${read.offset},` +
    `"publications":${publicationsJson(page)}}`
  );
}
