/** The 64 characters of base64url, all valid in sessions and keys. */
const ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Length of generated ids: 22 characters carry 132 random bits. */
export const RANDOM_ID_LENGTH = 22;

/**
 * A random id of `A-Za-z0-9_-` from `crypto.getRandomValues`, valid both as
 * a `session` and as an idempotency key.
 */
export function randomId(length = RANDOM_ID_LENGTH): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  let id = "";
  for (const byte of bytes) id += ALPHABET[byte & 63];
  return id;
}
