import {
  RedisUrlError,
  parseShards as parseRedisUrl,
  type ShardAddress,
} from "@switchboard/protocol";

import { ConfigError } from "./errors.js";

export type { ShardAddress } from "@switchboard/protocol";

/** The shards of `redisUrl`; a URL that cannot be used is a `ConfigError`. */
export function parseShards(redisUrl: string): ShardAddress[] {
  try {
    return parseRedisUrl(redisUrl);
  } catch (error) {
    if (error instanceof RedisUrlError) {
      throw new ConfigError(error.message, { cause: error });
    }
    throw error;
  }
}
