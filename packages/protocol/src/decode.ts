import { CloseCode, ErrorCode } from "./codes.js";
import { isValidChannel, isValidIdempotencyKey } from "./channel.js";
import type { Position, Request, RequestType } from "./messages.js";

/** Longest accepted `session` and `epoch` strings. */
const MAX_ID_LENGTH = 64;

/** Longest accepted token, in characters. */
const MAX_TOKEN_LENGTH = 16_384;

/** What a token must be, as an error message says it. */
const TOKEN_SHAPE = `a string of 1-${MAX_TOKEN_LENGTH} characters`;

/**
 * A frame that could not be decoded. With `closeCode` the connection cannot
 * survive it; otherwise the request with `id` gets an `error` reply.
 */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id?: number,
    readonly closeCode?: number,
  ) {
    super(message);
  }
}

type Fields = Record<string, unknown>;
type Validator = (frame: Fields, id: number) => ProtocolError | undefined;

const VALIDATORS: Record<RequestType, Validator> = {
  connect: (f, id) =>
    optional(f, id, "token", isToken, TOKEN_SHAPE) ??
    optional(f, id, "session", isShortId, "a string of 1-64 characters") ??
    optional(f, id, "client", isClientInfo, "{name, version} strings"),
  subscribe: (f, id) =>
    channel(f, id) ??
    optional(f, id, "since", isPosition, "{epoch, offset}") ??
    optional(f, id, "presence", isBoolean, "a boolean"),
  unsubscribe: (f, id) => channel(f, id),
  publish: (f, id) =>
    channel(f, id) ??
    (f.data === undefined
      ? invalid(id, "data", "any JSON value")
      : undefined) ??
    optional(f, id, "key", isValidIdempotencyKey, "1-64 of A-Za-z0-9_-"),
  presence: (f, id) => channel(f, id),
  history: (f, id) =>
    channel(f, id) ??
    optional(f, id, "since", isPosition, "{epoch, offset}") ??
    optional(f, id, "limit", isCount, "a non-negative integer") ??
    optional(f, id, "reverse", isBoolean, "a boolean"),
  ping: () => undefined,
  refresh: (f, id) =>
    isToken(f.token) ? undefined : invalid(id, "token", TOKEN_SHAPE),
};

/**
 * Decodes one text frame into a request. Returns a `ProtocolError` instead of
 * throwing, so bad input costs no stack unwinding on the receive path.
 */
export function decodeRequest(text: string): Request | ProtocolError {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return fatal("frame is not valid JSON");
  }
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) {
    return fatal("frame is not a JSON object");
  }

  const fields = frame as Fields;
  const id = fields.id;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 1) {
    return fatal("id must be an integer from 1 to 2^53-1");
  }

  const type = fields.type;
  if (typeof type !== "string" || !Object.hasOwn(VALIDATORS, type)) {
    return new ProtocolError(
      ErrorCode.BadRequest,
      typeof type === "string"
        ? `unknown request type ${JSON.stringify(type.slice(0, 32))}`
        : `type must be a string, got ${describe(type)}`,
      id,
    );
  }
  return VALIDATORS[type as RequestType](fields, id) ?? (frame as Request);
}

/** Names a value's kind without serializing it: it may nest deeply. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}

function fatal(message: string): ProtocolError {
  return new ProtocolError(
    ErrorCode.BadRequest,
    message,
    undefined,
    CloseCode.BadRequest,
  );
}

function invalid(id: number, field: string, expected: string): ProtocolError {
  return new ProtocolError(
    ErrorCode.BadRequest,
    `${field} must be ${expected}`,
    id,
  );
}

function channel(f: Fields, id: number): ProtocolError | undefined {
  if (isValidChannel(f.channel)) return undefined;
  return invalid(id, "channel", "1-200 characters of A-Za-z0-9_-:.@=/");
}

function optional(
  f: Fields,
  id: number,
  field: string,
  check: (value: unknown) => boolean,
  expected: string,
): ProtocolError | undefined {
  const value = f[field];
  if (value === undefined || check(value)) return undefined;
  return invalid(id, field, expected);
}

function isBoolean(value: unknown): boolean {
  return typeof value === "boolean";
}

function isCount(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isToken(value: unknown): boolean {
  return (
    typeof value === "string" &&
    value.length > 0 &&
    value.length <= MAX_TOKEN_LENGTH
  );
}

function isShortId(value: unknown): boolean {
  return (
    typeof value === "string" &&
    value.length > 0 &&
    value.length <= MAX_ID_LENGTH
  );
}

function isClientInfo(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const info = value as Fields;
  return typeof info.name === "string" && typeof info.version === "string";
}

/** Whether `value` is a well-formed position `{epoch, offset}`. */
export function isPosition(value: unknown): value is Position {
  if (typeof value !== "object" || value === null) return false;
  const { epoch, offset } = value as Fields;
  return isShortId(epoch) && isCount(offset);
}
