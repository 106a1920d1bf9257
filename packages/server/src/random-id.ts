import { randomFillSync } from "node:crypto";

/** Random bytes fetched at a time for ids. */
const POOL_SIZE = 4096;

const pool = Buffer.allocUnsafe(POOL_SIZE);
let used = POOL_SIZE;

/**
 * `bytes` random bytes as base64url. Ids are drawn from a pool refilled
 * 4 KiB at a time: a connection storm asks for two ids per handshake, and
 * one call into the random source per few hundred ids is much cheaper
 * than one per id.
 */
export function randomId(bytes: number): string {
  if (used + bytes > POOL_SIZE) {
    randomFillSync(pool);
    used = 0;
  }
  const id = pool.toString("base64url", used, used + bytes);
  used += bytes;
  return id;
}
