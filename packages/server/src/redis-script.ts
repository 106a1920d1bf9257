import {
  evalScript,
  scriptSource,
  shardedScript,
  type ScriptSource,
} from "@switchboard/protocol";

import type { KeyStore } from "./key-store.js";

export type { RedisClient } from "./key-store.js";

/**
 * A Lua script run by its SHA, sent whole once when Redis lacks it. On a
 * Redis Cluster it runs as its SPUBLISH variant.
 */
export class RedisScript {
  private readonly plain: ScriptSource;
  private readonly sharded: ScriptSource;

  constructor(text: string) {
    this.plain = scriptSource(text);
    this.sharded = scriptSource(shardedScript(text));
  }

  /** Runs the script with `keys` and `args`, on the slot of `keys[0]`. */
  run(store: KeyStore, keys: string[], args: string[]): Promise<unknown> {
    const slot = keys[0] ?? "";
    return evalScript(
      (command) => store.send(slot, command),
      store.sharded ? this.sharded : this.plain,
      keys,
      args,
    );
  }
}
