/** Longest channel name, in characters. */
export const MAX_CHANNEL_LENGTH = 200;

const CHANNEL_PATTERN = /^[A-Za-z0-9_\-:.@=/]{1,200}$/;
const KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `name` is a valid channel name: 1-200 of `A-Za-z0-9_-:.@=/`. */
export function isValidChannel(name: unknown): name is string {
  return typeof name === "string" && CHANNEL_PATTERN.test(name);
}

/** Whether `key` is a valid idempotency key: 1-64 of `A-Za-z0-9_-`. */
export function isValidIdempotencyKey(key: unknown): key is string {
  return typeof key === "string" && KEY_PATTERN.test(key);
}

/**
 * The namespace of a channel: the part before the first `:`, or the empty
 * string (the default namespace) when there is none.
 */
export function namespaceOf(channel: string): string {
  const colon = channel.indexOf(":");
  return colon === -1 ? "" : channel.slice(0, colon);
}

/**
 * Whether a grant pattern matches a channel: an exact name, or a prefix
 * ending in `*`. Channel names never contain `*`, so there is no escaping.
 */
export function matchesPattern(pattern: string, channel: string): boolean {
  if (pattern.endsWith("*")) {
    return channel.startsWith(pattern.slice(0, -1));
  }
  return pattern === channel;
}
