import { retryUnrun } from "@switchboard/protocol";
import type { createClient, createCluster } from "redis";

/** A connected node-redis client, as this package creates them. */
export type RedisClient = ReturnType<typeof createClient>;

/** A node-redis Redis Cluster client, as this package creates them. */
export type RedisClusterClient = ReturnType<typeof createCluster>;

/**
 * Where the engine's keys live: one Redis server, or a Redis Cluster that
 * sends each command to the master of its key's slot.
 */
export interface KeyStore {
  /** Sends one command; `key` names the slot it belongs to. */
  send(key: string, args: readonly string[]): Promise<unknown>;
  /** The publish command of topics: PUBLISH, or SPUBLISH on a cluster. */
  readonly publish: "PUBLISH" | "SPUBLISH";
  /** Whether the store is a Redis Cluster. */
  readonly sharded: boolean;
}

/** The keys of one Redis server, through `client`. */
export function serverStore(client: () => RedisClient): KeyStore {
  return {
    send: (_key, args) => client().sendCommand([...args]),
    publish: "PUBLISH",
    sharded: false,
  };
}

/**
 * The keys of a Redis Cluster. A command the cluster answered without
 * running it is sent again, unchanged, while slots move or a failover
 * completes: a publish keeps its idempotency key, so it lands once.
 */
export function clusterStore(cluster: RedisClusterClient): KeyStore {
  return {
    send: (key, args) =>
      retryUnrun(() => cluster.sendCommand(key, false, [...args])),
    publish: "SPUBLISH",
    sharded: true,
  };
}
