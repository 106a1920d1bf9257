import { createHash } from "node:crypto";

import { shardedScript } from "@switchboard/protocol";

import type { KeyStore } from "./key-store.js";

export type { RedisClient } from "./key-store.js";

/** The text of a script and its SHA1. */
interface Source {
  readonly text: string;
  readonly sha: string;
}

function source(text: string): Source {
  return { text, sha: createHash("sha1").update(text).digest("hex") };
}

/**
 * A Lua script run by its SHA, sent whole once when Redis lacks it. On a
 * Redis Cluster it runs as its SPUBLISH variant.
 */
export class RedisScript {
  private readonly plain: Source;
  private readonly sharded: Source;

  constructor(text: string) {
    this.plain = source(text);
    this.sharded = source(shardedScript(text));
  }

  /** Runs the script with `keys` and `args`, on the slot of `keys[0]`. */
  async run(store: KeyStore, keys: string[], args: string[]): Promise<unknown> {
    const { text, sha } = store.sharded ? this.sharded : this.plain;
    const rest = [String(keys.length), ...keys, ...args];
    const slot = keys[0] ?? "";
    try {
      return await store.send(slot, ["EVALSHA", sha, ...rest]);
    } catch (error) {
      if (!String((error as Error).message).startsWith("NOSCRIPT")) {
        throw error;
      }
      return store.send(slot, ["EVAL", text, ...rest]);
    }
  }
}
