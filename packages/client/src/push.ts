import type { Push } from "./connection.js";

type Fields = Readonly<Record<string, unknown>>;

const CHECKS: Readonly<Record<string, (push: Fields) => boolean>> = {
  message: (p) =>
    isString(p.channel) &&
    isString(p.epoch) &&
    typeof p.offset === "number" &&
    Number.isSafeInteger(p.offset) &&
    p.offset >= 0 &&
    p.data !== undefined,
  join: (p) => isString(p.channel) && isString(p.user) && isString(p.client),
  leave: (p) => isString(p.channel) && isString(p.user) && isString(p.client),
  unsubscribed: (p) => isString(p.channel) && typeof p.code === "string",
  reconnect: (p) => typeof p.after === "number" && Number.isFinite(p.after),
  error: (p) => typeof p.code === "string",
};

/**
 * Whether a push is of a known type and carries the fields the client
 * relies on. Unknown types are ignored, as the protocol asks; malformed
 * known ones are dropped rather than trusted.
 */
export function isValidPush(push: Push): boolean {
  const fields = push as unknown as Fields;
  const type = fields.type;
  if (typeof type !== "string" || !Object.hasOwn(CHECKS, type)) return false;
  return (CHECKS[type] as (push: Fields) => boolean)(fields);
}

function isString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}
