import {
  GENERATION_SCRIPT,
  PUBLISH_SCRIPT,
  RedisUrlError,
  SHARD_KEY,
  SINGLE_SHARD,
  SHARD_SET_KEY,
  channelKeys,
  clusterGeneration,
  evalScript,
  fingerprint,
  isClusterInfo,
  keySlot,
  parseShards,
  placeShard,
  redisCredentials,
  redisIds,
  retryUnrun,
  scriptSource,
  shardedScript,
  type ScriptSource,
  type ShardAddress,
} from "@switchboard/protocol";
import { createClient, createCluster } from "redis";

import { InvalidArgumentError } from "./errors.js";

/** A node-redis client of one Redis server. */
export type RedisClient = ReturnType<typeof createClient>;

type ClusterClient = ReturnType<typeof createCluster>;

/** Connection attempts before a command fails. */
const RECONNECT_TRIES = 3;
/** Pause between connection attempts, in ms. */
const RECONNECT_DELAY_MS = 100;
/**
 * How long a generation read from Redis is used before it is read again,
 * in ms. A reconnect reads it again at once; this bounds how long a
 * failover that kept the connection goes unnoticed.
 */
const GENERATION_MAX_AGE_MS = 1_000;

/** The shard or master a channel lives on, as a publish needs it. */
export interface Placement {
  /** Runs the publish script there; resolves with its reply. */
  publish(keys: string[], args: string[]): Promise<unknown>;
  /**
   * The generation of that shard: the first part of its epochs. Rejects
   * with an `InvalidArgumentError` when the shard's nodes place channels
   * with another shard set.
   */
  generation(): Promise<string>;
}

/**
 * The Redis of a fleet as its nodes use it: one server, named standalone
 * shards, or a Redis Cluster. Channels are placed as nodes place them.
 */
export interface Fleet {
  /** Where `channel` lives; connects first when needed. */
  place(channel: string): Promise<Placement>;
  close(): Promise<void>;
}

/**
 * The fleet of `url`, the fleet's `--redis-url` as is: one URL (a Redis
 * server, or a node of a Redis Cluster: asked on first use) or named
 * shards. With `client`, that one Redis server.
 */
export function openFleet(url: string, client?: RedisClient): Fleet {
  if (client) {
    return new ShardFleet([
      new ServerShard(SINGLE_SHARD, SINGLE_SHARD, client, false),
    ]);
  }
  let shards: ShardAddress[];
  try {
    shards = parseShards(url);
  } catch (error) {
    if (error instanceof RedisUrlError) {
      throw new InvalidArgumentError(error.message.replace(/^redisUrl/, "url"));
    }
    throw error;
  }
  const set = fingerprint(shards);
  if (shards.length > 1) {
    return new ShardFleet(
      shards.map(
        (shard) =>
          new ServerShard(shard.name, set, serverClient(shard.url), true),
      ),
    );
  }
  return new DetectedFleet(shards[0]!.url, set);
}

/** Standalone servers: each channel on the shard rendezvous hashing picks. */
class ShardFleet implements Fleet {
  constructor(private readonly shards: readonly ServerShard[]) {}

  place(channel: string): Promise<Placement> {
    const shard =
      this.shards.length === 1
        ? this.shards[0]!
        : placeShard(this.shards, channel);
    return Promise.resolve(shard);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.shards.map((shard) => shard.close()));
  }
}

/** One URL: a standalone server or a cluster, told apart on first use. */
class DetectedFleet implements Fleet {
  private detected: Promise<Fleet> | undefined;

  constructor(
    private readonly url: string,
    private readonly set: string,
  ) {}

  async place(channel: string): Promise<Placement> {
    this.detected ??= this.detect().catch((error: unknown) => {
      this.detected = undefined;
      throw error;
    });
    return (await this.detected).place(channel);
  }

  /** Asks the server, like a node does, whether it is a cluster node. */
  private async detect(): Promise<Fleet> {
    const client = serverClient(this.url);
    const shard = new ServerShard(SINGLE_SHARD, this.set, client, true);
    let cluster: boolean;
    try {
      cluster = isClusterInfo(String(await shard.send(["INFO", "cluster"])));
    } catch (error) {
      await shard.close();
      throw error;
    }
    if (!cluster) return new ShardFleet([shard]);
    await shard.close();
    return new ClusterFleet(this.url, this.set);
  }

  async close(): Promise<void> {
    const fleet = await this.detected?.catch(() => undefined);
    await fleet?.close();
  }
}

function serverClient(url: string): RedisClient {
  const client: RedisClient = createClient({
    url,
    disableOfflineQueue: true,
    // A publish fails fast instead of waiting through endless retries; the
    // next publish connects again.
    socket: { reconnectStrategy },
  });
  // node-redis emits errors while it reconnects; calls report them.
  client.on("error", () => undefined);
  return client;
}

/** Resolves once `client` is ready again, or has given up reconnecting. */
function settled(client: RedisClient): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      client.off("ready", done);
      client.off("end", done);
      resolve();
    };
    client.on("ready", done);
    client.on("end", done);
  });
}

function reconnectStrategy(retries: number, cause: Error): number | Error {
  return retries >= RECONNECT_TRIES ? cause : RECONNECT_DELAY_MS;
}

/** A generation read from Redis, and when. */
interface Known {
  readonly value: string;
  readonly at: number;
}

/** One standalone Redis server of the fleet. */
class ServerShard implements Placement {
  private connecting: Promise<unknown> | undefined;
  private known: Known | undefined;
  private readonly script = new Script(PUBLISH_SCRIPT);
  private readonly generationScript = new Script(GENERATION_SCRIPT);

  /**
   * `set` is the fleet's shard set as nodes record it on the server;
   * `owned`, whether `close` closes the client.
   */
  constructor(
    readonly name: string,
    private readonly set: string,
    private readonly client: RedisClient,
    private readonly owned: boolean,
  ) {
    client.on("ready", this.forget);
  }

  /** A new connection may reach a restarted or failed-over server. */
  private readonly forget = (): void => {
    this.known = undefined;
  };

  async send(args: string[]): Promise<unknown> {
    const { client } = this;
    // A connection being re-established is waited for, within its few
    // attempts, rather than failing the command at once.
    if (client.isOpen && !client.isReady) await settled(client);
    if (!client.isOpen) {
      this.connecting ??= client.connect().finally(() => {
        this.connecting = undefined;
      });
      await this.connecting;
    }
    return client.sendCommand(args);
  }

  publish(keys: string[], args: string[]): Promise<unknown> {
    return this.script.run((command) => this.send(command), keys, args);
  }

  /**
   * Reads the server's ids and runs the nodes' generation script, which
   * advances the generation when the server restarted or failed over, as
   * the first node to notice would. Refuses a server whose nodes place
   * channels with another shard set.
   */
  async generation(): Promise<string> {
    const { known } = this;
    if (known && Date.now() - known.at < GENERATION_MAX_AGE_MS) {
      return known.value;
    }
    checkSet(this.set, await this.send(["GET", SHARD_SET_KEY]));
    const ids = redisIds(
      String(await this.send(["INFO", "server"])),
      String(await this.send(["INFO", "replication"])),
    );
    const value = String(
      await this.generationScript.run(
        (command) => this.send(command),
        [SHARD_KEY],
        [ids.run, ids.repl],
      ),
    );
    this.known = { value, at: Date.now() };
    return value;
  }

  async close(): Promise<void> {
    this.client.off("ready", this.forget);
    if (this.owned && this.client.isOpen) await this.client.close();
  }
}

/** A Redis Cluster: each channel on the master of its slot. */
class ClusterFleet implements Fleet {
  private readonly client: ClusterClient;
  private connecting: Promise<unknown> | undefined;
  private readonly script = new Script(shardedScript(PUBLISH_SCRIPT));
  /** Generations of the masters, by `host:port`. */
  private readonly known = new Map<string, Known>();
  private setChecked = 0;

  constructor(
    url: string,
    private readonly set: string,
  ) {
    const socket = { reconnectStrategy };
    this.client = createCluster({
      rootNodes: [{ url, socket }],
      defaults: { disableOfflineQueue: true, socket, ...redisCredentials(url) },
    });
    this.client.on("error", () => undefined);
    // A master that reconnects may have restarted or been replaced.
    this.client.on("node-ready", (node: { host: string; port: number }) => {
      this.known.delete(`${node.host}:${node.port}`);
    });
  }

  async place(channel: string): Promise<Placement> {
    if (!this.client.isOpen) {
      this.connecting ??= this.client.connect().finally(() => {
        this.connecting = undefined;
      });
      await this.connecting;
    }
    const key = channelKeys(channel).meta;
    return {
      publish: (keys, args) =>
        this.script.run((command) => this.send(key, command), keys, args),
      generation: () => this.generation(key),
    };
  }

  /**
   * Sends a command to the master of `key`'s slot; one the cluster did not
   * run (a slot in motion, a failover) is sent again, unchanged.
   */
  private send(key: string, args: string[]): Promise<unknown> {
    return retryUnrun(() => this.client.sendCommand(key, false, args));
  }

  /** The generation of the master serving `key`, from its ids. */
  private async generation(key: string): Promise<string> {
    if (Date.now() - this.setChecked >= GENERATION_MAX_AGE_MS) {
      checkSet(
        this.set,
        await this.send(SHARD_SET_KEY, ["GET", SHARD_SET_KEY]),
      );
      this.setChecked = Date.now();
    }
    const master = this.client.slots[keySlot(key)]?.master;
    if (!master) throw new Error(`no master serves the slot of ${key}`);
    const known = this.known.get(master.address);
    if (known && Date.now() - known.at < GENERATION_MAX_AGE_MS) {
      return known.value;
    }
    const node = await this.client.nodeClient(master);
    const value = clusterGeneration(
      redisIds(await node.info("server"), await node.info("replication")),
    );
    this.known.set(master.address, { value, at: Date.now() });
    return value;
  }

  async close(): Promise<void> {
    if (this.client.isOpen) await this.client.close();
  }
}

/** Refuses a Redis whose nodes record another shard set than `set`. */
function checkSet(set: string, seen: unknown): void {
  if (seen === null || seen === undefined || seen === set) return;
  throw new InvalidArgumentError(
    `url: the fleet's nodes place channels with shards ${String(seen)}; ` +
      `this publisher has ${set}`,
  );
}

/** A Lua script run by its SHA, sent whole once where Redis lacks it. */
class Script {
  private readonly source: ScriptSource;

  constructor(text: string) {
    this.source = scriptSource(text);
  }

  run(
    send: (command: string[]) => Promise<unknown>,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    return evalScript(send, this.source, keys, args);
  }
}
