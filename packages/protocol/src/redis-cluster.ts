import { sha1 } from "@noble/hashes/legacy.js";
import { utf8ToBytes } from "@noble/hashes/utils.js";

/** Hash slots of a Redis Cluster. */
export const SLOTS = 16384;

const CRC16_TABLE = Array.from({ length: 256 }, (_, n) => {
  let crc = n << 8;
  for (let k = 0; k < 8; k++) {
    crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
});

/**
 * The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag,
 * the text between the first `{` and the next `}` when not empty, or of
 * the whole key, modulo 16384.
 */
export function keySlot(key: string): number {
  let bytes = utf8ToBytes(key);
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) {
    crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  }
  return crc % SLOTS;
}

/** Whether `INFO cluster` of a Redis says it is a Redis Cluster node. */
export function isClusterInfo(info: string): boolean {
  return /cluster_enabled:1/.test(info);
}

/** A Redis server's identity: its run id and replication id. */
export interface RedisIds {
  readonly run: string;
  readonly repl: string;
}

/** The run and replication ids in `INFO server` and `INFO replication`. */
export function redisIds(server: string, replication: string): RedisIds {
  return {
    run: /run_id:(\w+)/.exec(server)?.[1] ?? "",
    repl: /master_replid:(\w+)/.exec(replication)?.[1] ?? "",
  };
}

const BASE64URL =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * The generation of a Redis Cluster master, first part of the epochs of
 * its channels. A master has no key of its own to count in (keys live in
 * slots, which move): its generation is its ids, digested, so it changes
 * when the master restarts or a replica takes over. The first 6 bytes of
 * the SHA-1 of `<run>:<repl>`, as 8 characters of base64url.
 */
export function clusterGeneration(ids: RedisIds): string {
  const digest = sha1(utf8ToBytes(`${ids.run}:${ids.repl}`));
  let text = "";
  for (let i = 0; i < 6; i += 3) {
    const word = (digest[i]! << 16) | (digest[i + 1]! << 8) | digest[i + 2]!;
    for (let shift = 18; shift >= 0; shift -= 6) {
      text += BASE64URL[(word >> shift) & 63];
    }
  }
  return text;
}

/**
 * Replies of a cluster that did not run the command: a slot in motion
 * (MOVED and ASK past the client's own redirections, TRYAGAIN while a
 * multi-key slot migrates) or a cluster between failover steps.
 */
const NOT_RUN = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;

/** First wait before a command the cluster did not run is sent again. */
const FIRST_RETRY_MS = 20;

/** Waits before giving up, doubling: about 2.5 s in all. */
const RETRIES = 7;

/**
 * How long to wait before sending a command again, unchanged, after
 * `error` on attempt `attempt` (from 0); undefined when it must not be
 * sent again. Only a reply saying the cluster did not run the command is
 * retried, so a publish with an idempotency key lands once.
 */
export function clusterRetryDelay(
  error: unknown,
  attempt: number,
): number | undefined {
  const message = String((error as Error | undefined)?.message ?? error);
  if (attempt >= RETRIES || !NOT_RUN.test(message)) return undefined;
  return FIRST_RETRY_MS * 2 ** attempt;
}

/**
 * Runs `call`, and again while the cluster answers that it did not run it,
 * waiting as `clusterRetryDelay` says; rejects with the last error.
 */
export async function retryUnrun<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const delay = clusterRetryDelay(error, attempt);
      if (delay === undefined) throw error;
      await new Promise<void>((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * The user and password of a Redis URL, for the connections a cluster
 * client opens to the nodes it discovers.
 */
export function redisCredentials(url: string): {
  username?: string;
  password?: string;
} {
  const parsed = new URL(url);
  return {
    ...(parsed.username && { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password && { password: decodeURIComponent(parsed.password) }),
  };
}
