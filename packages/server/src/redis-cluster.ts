import {
  SLOTS,
  isClusterInfo,
  keySlot,
  redisCredentials,
  type ShardAddress,
} from "@switchboard/protocol";
import { createClient, createCluster } from "redis";

import {
  clusterStore,
  type KeyStore,
  type RedisClusterClient,
} from "./key-store.js";
import type { Logger } from "./logger.js";
import type { RedisShard } from "./redis-shard.js";

/** Options of a Redis Cluster under the redis engine. */
export interface RedisClusterOptions {
  /** The URL of one node; credentials and TLS apply to every node. */
  readonly url: string;
  /** A shard for one master; the cluster connects and closes it. */
  readonly shard: (address: ShardAddress, store: KeyStore) => RedisShard;
  /** The masters or their slots changed. */
  readonly changed: () => void;
  readonly logger: Logger;
}

/** A slot range of CLUSTER SLOTS: start, end, master [host, port, id]. */
type SlotRange = [number, number, [string, number, ...unknown[]]];

/**
 * Whether the Redis at `url` is a Redis Cluster node (`INFO cluster`
 * says cluster_enabled:1). Throws when it cannot be reached.
 */
export async function isClusterNode(url: string): Promise<boolean> {
  // One attempt: the caller retries, and must be able to stop retrying
  // when the node closes.
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: false, connectTimeout: 5_000 },
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
    return isClusterInfo(await client.info("cluster"));
  } finally {
    client.destroy();
  }
}

/**
 * A Redis Cluster: one node-redis cluster client for commands, and a
 * shard per master for its subscriptions, generation, canary and health.
 * The slot map is read again on `refresh` (each canary, and whenever a
 * shard channel or command meets a moved slot).
 */
export class RedisCluster {
  readonly client: RedisClusterClient;
  readonly store: KeyStore;
  /** The shards of the masters, by `host:port`. */
  private readonly masters = new Map<string, RedisShard>();
  /** The master of each slot; undefined before the first map. */
  private owners: (RedisShard | undefined)[] = [];
  private refreshing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: RedisClusterOptions) {
    this.client = createCluster({
      rootNodes: [{ url: options.url }],
      defaults: { disableOfflineQueue: true, ...redisCredentials(options.url) },
    });
    this.client.on("error", (error: Error) =>
      options.logger.debug({ err: error.message }, "redis cluster error"),
    );
    this.store = clusterStore(this.client);
  }

  /** The shards of the masters, sorted by address. */
  shards(): RedisShard[] {
    return [...this.masters.values()].sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
  }

  /** The master serving the slot of `key`, once the map is known. */
  ownerOf(key: string): RedisShard | undefined {
    return this.owners[keySlot(key)];
  }

  /** Connects the cluster client, then reads the slot map. */
  async connect(): Promise<void> {
    await this.client.connect();
    await this.refresh();
  }

  /** Reads the slot map; one read at a time, others wait for it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.readSlots().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async readSlots(): Promise<void> {
    if (this.closed || !this.client.isOpen) return;
    const ranges = (await this.client.sendCommand(undefined, true, [
      "CLUSTER",
      "SLOTS",
    ])) as SlotRange[];
    const owners: (RedisShard | undefined)[] = new Array(SLOTS);
    const seen = new Set<string>();
    const fresh: RedisShard[] = [];
    for (const [start, end, [host, port]] of ranges) {
      const name = `${host}:${port}`;
      seen.add(name);
      let shard = this.masters.get(name);
      if (!shard) {
        const url = new URL(this.options.url);
        url.hostname = host;
        url.port = String(port);
        shard = this.options.shard(
          { name, url: url.toString(), identity: `${name}/0` },
          this.store,
        );
        this.masters.set(name, shard);
        fresh.push(shard);
      }
      owners.fill(shard, start, end + 1);
    }
    let changed = fresh.length > 0;
    for (let slot = 0; slot < SLOTS && !changed; slot++) {
      changed = owners[slot] !== this.owners[slot];
    }
    const gone = [...this.masters].filter(([name]) => !seen.has(name));
    for (const [name] of gone) this.masters.delete(name);
    this.owners = owners;
    for (const shard of this.masters.values()) {
      shard.serve((slot) => owners[slot] === shard);
    }
    if (fresh.length > 0 || gone.length > 0) {
      this.options.logger.info(
        { masters: [...this.masters.keys()] },
        "redis cluster masters",
      );
    }
    if (changed || gone.length > 0) this.options.changed();
    await Promise.all(fresh.map((shard) => shard.connect()));
    if (fresh.length > 0) this.options.changed();
    await Promise.allSettled(gone.map(([, shard]) => shard.close()));
  }

  /** Closes the cluster client and every master's shard. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([
      this.client.close(),
      ...[...this.masters.values()].map((shard) => shard.close()),
    ]);
  }
}
