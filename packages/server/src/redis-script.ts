import { createHash } from "node:crypto";

import type { createClient } from "redis";

/** A connected node-redis client, as this package creates them. */
export type RedisClient = ReturnType<typeof createClient>;

/** A Lua script run by its SHA, sent whole once when Redis lacks it. */
export class RedisScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  /** Runs the script with `keys` and `args`. */
  async run(
    client: RedisClient,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    const options = { keys, arguments: args };
    try {
      return await client.evalSha(this.sha, options);
    } catch (error) {
      if (!String((error as Error).message).startsWith("NOSCRIPT")) {
        throw error;
      }
      return client.eval(this.source, options);
    }
  }
}
