import { utf8ToBytes } from "@noble/hashes/utils.js";

/** One Redis shard of a fleet: a name and where it is. */
export interface ShardAddress {
  readonly name: string;
  readonly url: string;
  /** `host:port/db` of the URL: what makes two URLs the same server. */
  readonly identity: string;
}

/** The name of the one shard a plain Redis URL describes. */
export const SINGLE_SHARD = "default";

const SHARD_NAME = /^[A-Za-z0-9_-]{1,32}$/;

/** A Redis URL, or a list of named shards, that cannot be used. */
export class RedisUrlError extends Error {
  override readonly name = "RedisUrlError";
}

/**
 * Parses a fleet's Redis URL: one plain URL is one shard;
 * `a=redis://...,b=...` names several, sorted by name. Throws a
 * `RedisUrlError` naming what is wrong.
 */
export function parseShards(redisUrl: string): ShardAddress[] {
  const parts = redisUrl.split(",").map((part) => part.trim());
  const named = parts.map((part) => /^([^=/:]+)=(.*)$/.exec(part));
  if (parts.length === 1 && !named[0]) {
    return [address(SINGLE_SHARD, parts[0]!)];
  }
  const shards = parts.map((part, i) => {
    const match = named[i];
    if (!match) {
      throw new RedisUrlError(
        `redisUrl: with several shards each is name=URL, got "${part}"`,
      );
    }
    if (!SHARD_NAME.test(match[1]!)) {
      throw new RedisUrlError(
        `redisUrl: shard name "${match[1]}" must be 1-32 of A-Za-z0-9_-`,
      );
    }
    return address(match[1]!, match[2]!);
  });
  for (const [i, shard] of shards.entries()) {
    const twin = shards.slice(0, i).find((s) => s.name === shard.name);
    if (twin) throw new RedisUrlError(`redisUrl: shard "${twin.name}" twice`);
    const same = shards.slice(0, i).find((s) => s.identity === shard.identity);
    if (same) {
      throw new RedisUrlError(
        `redisUrl: shards "${same.name}" and "${shard.name}" are one server`,
      );
    }
  }
  return shards.sort((a, b) => (a.name < b.name ? -1 : 1));
}

function address(name: string, url: string): ShardAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RedisUrlError(`redisUrl: "${url}" is not a URL`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new RedisUrlError(
      `redisUrl: "${url}" must start with redis:// or rediss://`,
    );
  }
  if (parsed.hostname === "") {
    throw new RedisUrlError(`redisUrl: "${url}" names no host`);
  }
  // Redis numbers its databases 0 to 15 unless configured otherwise; what
  // is not a whole number could never be selected.
  const path = parsed.pathname.slice(1);
  if (path !== "" && !/^\d{1,5}$/.test(path)) {
    throw new RedisUrlError(
      `redisUrl: "${url}": the path must be a database number`,
    );
  }
  const db = Number(path || "0");
  const port = parsed.port || "6379";
  return {
    name,
    url,
    identity: `${parsed.hostname.toLowerCase()}:${port}/${db}`,
  };
}

/**
 * The shard set as every node of a fleet must see it: names and server
 * identities, sorted, without credentials. Nodes record it on each shard.
 * One shard is its name alone: every channel lands on it whatever address
 * a node reaches it by (a proxy, another host name).
 */
export function fingerprint(shards: readonly ShardAddress[]): string {
  if (shards.length === 1) return shards[0]!.name;
  return shards
    .map((shard) => `${shard.name}=${shard.identity}`)
    .sort()
    .join(",");
}

/**
 * The shard a channel lives on: the highest CRC32 of `<name>:<channel>`
 * (rendezvous hashing), so adding or removing a shard moves only the
 * channels that land on, or leave, that shard.
 */
export function placeShard<T extends { readonly name: string }>(
  shards: readonly T[],
  channel: string,
): T {
  let best = shards[0]!;
  let bestScore = -1;
  for (const shard of shards) {
    const score = crc32(`${shard.name}:${channel}`);
    if (score > bestScore || (score === bestScore && shard.name < best.name)) {
      best = shard;
      bestScore = score;
    }
  }
  return best;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (IEEE) of the UTF-8 bytes of `text`, as an unsigned integer. */
export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (const byte of utf8ToBytes(text)) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
