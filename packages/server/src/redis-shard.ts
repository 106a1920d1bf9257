import {
  ErrorCode,
  GENERATION_SCRIPT,
  NODES_KEY,
  PRESENCE_REAP_SCRIPT,
  SHARD_KEY,
  SHARD_SET_KEY,
  SHARD_SET_SCRIPT,
  channelKeys,
  clusterGeneration,
  isClusterInfo,
  keySlot,
  nodeKeys,
  redisIds,
  type ShardAddress,
} from "@switchboard/protocol";
import { createClient } from "redis";

import { serverStore, type KeyStore } from "./key-store.js";
import type { Logger } from "./logger.js";
import { RedisScript, type RedisClient } from "./redis-script.js";
import { RequestError } from "./request-error.js";

/** The reason of a shard not yet connected; quiet, it is the usual start. */
const CONNECTING = "connecting to redis";
/** Options of one shard of the redis engine. */
export interface RedisShardOptions {
  readonly address: ShardAddress;
  /** The node's shard set, as `fingerprint()` writes it. */
  readonly fingerprint: string;
  /** The node incarnation, for liveness and the canary topic. */
  readonly incarnation: string;
  /** How long liveness and the shard set outlive their refresh, ms. */
  readonly presenceTtl: number;
  /** How often each connection is PINGed, ms. */
  readonly pingInterval: number;
  /** How long a PING may go unanswered before the connection is replaced. */
  readonly timeout: number;
  readonly logger: Logger;
  /** Pub/sub traffic of the shard may have been lost: repair its channels. */
  readonly lost: () => void;
  /** The shard's health changed. */
  readonly changed: () => void;
  /**
   * The keys of the Redis Cluster this shard is a master of; topics are
   * then shard channels. Without it the shard is a Redis server of its
   * own and keeps its keys there.
   */
  readonly cluster?: KeyStore;
  /**
   * The slot map the shard was made from is stale: Redis dropped a shard
   * channel here (its slot moved elsewhere), or this master is now a
   * replica.
   */
  readonly stale?: () => void;
}

/** A shard's health: why it cannot serve, and since when. */
export interface ShardHealth {
  readonly ready: boolean;
  readonly reason: string | undefined;
  readonly since: number;
}

type Listener = (payload: string) => void;

/** The two connections of a shard, as reasons and logs name them. */
type Link = "commands" | "subscriber";

/** Canaries missed in a row before the shard calls the node deaf. */
const CANARY_MISSES = 3;

const generationScript = new RedisScript(GENERATION_SCRIPT);
const shardSetScript = new RedisScript(SHARD_SET_SCRIPT);
const presenceReapScript = new RedisScript(PRESENCE_REAP_SCRIPT);

/**
 * One Redis server of the redis engine: its command and subscriber
 * connections, the topics the node listens to there, its generation, its
 * canary and its health. The engine decides which channels live here.
 */
export class RedisShard {
  readonly name: string;
  /** The engine's logger, with the shard's name in every line. */
  private readonly log: Logger;
  /** Commands and scripts; they fail at once while Redis is away. */
  commands: RedisClient;
  /** Where the keys of channels and nodes live. */
  readonly store: KeyStore;
  /** On a cluster: the hash tag of the canary, in a slot of this master. */
  private canaryTag = "";
  private subscriber: RedisClient;
  /** Connections whose last PING went unanswered, until one is answered. */
  private readonly silent = new Set<Link>();
  /** PINGs in flight, so a slow one is not sent twice. */
  private readonly probing = new Set<Link>();
  /** What the subscriber connection must hear: the engine's table. */
  private readonly topics = new Map<string, Listener>();
  /**
   * The shard's generation, first part of every epoch clients see; ""
   * until known. It advances when the Redis server restarts or fails over.
   */
  generation = "";
  /**
   * Canaries published, acknowledged by Redis, and heard back. Only an
   * acknowledged canary that was not heard blames the subscriber: one the
   * command connection never delivered is that connection's fault.
   */
  private readonly canary = { sent: 0, acked: 0, heard: 0, misses: 0 };
  /** Why the server's eviction policy makes the shard unusable. */
  private policyProblem: string | undefined;
  /** Why the shard set recorded on the server makes it unusable. */
  private setProblem: string | undefined;
  /** Channels where this incarnation has indexed presence here. */
  private readonly presenceChannels = new Set<string>();
  private closed = false;
  /**
   * Since when the shard hears nothing while its commands work (a deaf or
   * unreachable subscriber); undefined while it hears.
   */
  deafSince: number | undefined;
  private current: ShardHealth = {
    ready: false,
    reason: CONNECTING,
    since: Date.now(),
  };

  constructor(private readonly options: RedisShardOptions) {
    this.name = options.address.name;
    this.log = withShard(options.logger, this.name);
    this.commands = this.newCommands();
    this.subscriber = this.newSubscriber();
    this.store = options.cluster ?? serverStore(() => this.commands);
  }

  /** Whether the shard is a master of a Redis Cluster. */
  get sharded(): boolean {
    return this.store.sharded;
  }

  /** Whether the shard listens to `topic` (or is about to). */
  hears(topic: string): boolean {
    return this.topics.has(topic);
  }

  /**
   * On a cluster: the slots this master serves changed; the canary moves
   * to one of them when its slot left.
   */
  serve(owns: (slot: number) => boolean): void {
    if (this.canaryTag !== "" && owns(keySlot(`{${this.canaryTag}}`))) return;
    const previous = this.canaryTopic;
    for (let i = 0; ; i++) {
      if (owns(keySlot(`{c${i}}`))) {
        this.canaryTag = `c${i}`;
        break;
      }
      if (i > 100_000) return;
    }
    if (previous === this.canaryTopic || !this.subscriber.isReady) return;
    void this.subscriber.sUnsubscribe(previous).catch(() => undefined);
    void this.hearCanary().catch(() => undefined);
  }

  /**
   * PINGs both connections. A link that went silent without a FIN or RST
   * (a black hole, a half-open socket) answers no PING: after `timeout`
   * the connection is replaced, so the node notices within
   * `pingInterval` plus `timeout` and repairs what it may have missed.
   */
  probe(): void {
    this.probeLink("commands", this.commands);
    this.probeLink("subscriber", this.subscriber);
  }

  private probeLink(link: Link, client: RedisClient): void {
    if (this.closed || !client.isReady || this.probing.has(link)) return;
    this.probing.add(link);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), this.options.timeout);
      timer.unref();
    });
    void Promise.race([client.ping().catch(() => "failed"), late]).then(
      (answer) => {
        clearTimeout(timer);
        this.probing.delete(link);
        if (answer !== "late") {
          if (this.silent.delete(link)) this.checkHealth();
          return;
        }
        const current = link === "commands" ? this.commands : this.subscriber;
        if (current !== client) return;
        this.silent.add(link);
        this.log.warn(
          { link, timeout: this.options.timeout },
          "redis connection unresponsive; replacing it",
        );
        this.checkHealth();
        if (link === "commands") this.rebuildCommands();
        else void this.rebuildSubscriber();
      },
    );
  }

  /** A command connection; it checks the generation on each reconnect. */
  private newCommands(): RedisClient {
    // Without Redis, requests fail at once with `unavailable` rather than
    // waiting in a queue the client cannot see.
    const commands: RedisClient = createClient({
      url: this.options.address.url,
      disableOfflineQueue: true,
    });
    commands.on("error", (error: Error) =>
      this.log.debug({ err: error.message }, "redis commands error"),
    );
    // A restarted or failed-over server shows first as a reconnect.
    commands.on("ready", () => {
      this.checkHealth();
      if (this.generation === "" || commands !== this.commands) return;
      this.checkGeneration().catch((error) =>
        this.log.debug({ err: String(error) }, "generation check"),
      );
    });
    commands.on("end", () => this.checkHealth());
    return commands;
  }

  /** Replaces a silent command connection; commands waiting on it fail. */
  private rebuildCommands(): void {
    const silent = this.commands;
    this.commands = this.newCommands();
    silent.destroy();
    void this.connectCommands();
  }

  /** Whether the shard can serve; when not, why and since when. */
  health(): ShardHealth {
    return this.current;
  }

  /** Connects both connections; failures leave the shard not ready. */
  async connect(): Promise<void> {
    await Promise.all([this.connectCommands(), this.connectSubscriber()]);
  }

  /** Listens to `topic`; resolves once Redis confirmed it. */
  async listen(topic: string, listener: Listener): Promise<void> {
    this.topics.set(topic, listener);
    try {
      await this.subscribe(topic, listener);
    } catch (error) {
      if (this.topics.get(topic) === listener) this.topics.delete(topic);
      throw error;
    }
  }

  /** SUBSCRIBE, or SSUBSCRIBE of one shard channel on a cluster. */
  private async subscribe(topic: string, listener: Listener): Promise<void> {
    if (this.sharded) await this.subscriber.sSubscribe(topic, listener);
    else await this.subscriber.subscribe(topic, listener);
  }

  /**
   * Listens to `topic` for as long as the shard runs: from the first
   * connect, and again on every new subscriber connection.
   */
  keep(topic: string, listener: Listener): void {
    this.topics.set(topic, listener);
  }

  /** Stops listening to `topic`. */
  async unlisten(topic: string): Promise<void> {
    const listener = this.topics.get(topic);
    this.topics.delete(topic);
    if (!listener || !this.subscriber.isReady) return;
    if (this.sharded) await this.subscriber.sUnsubscribe(topic, listener);
    else await this.subscriber.unsubscribe(topic, listener);
  }

  /**
   * Publishes a canary the node's own subscription must hear before the
   * next one; after CANARY_MISSES misses the shard is deaf: not ready, and
   * it rebuilds its subscriber connection rather than trust it.
   */
  sing(): void {
    const { canary } = this;
    canary.misses = canary.heard < canary.acked ? canary.misses + 1 : 0;
    this.checkHealth();
    if (canary.misses >= CANARY_MISSES && this.subscriber.isReady) {
      void this.rebuildSubscriber();
    }
    if (!this.commands.isReady) return;
    this.checkGeneration().catch((error) =>
      this.log.debug({ err: String(error) }, "generation check"),
    );
    canary.sent += 1;
    const sent = canary.sent;
    this.commands
      .sendCommand([this.store.publish, this.canaryTopic, String(sent)])
      .then(() => {
        canary.acked = Math.max(canary.acked, sent);
      })
      .catch(() => undefined);
  }

  /** The epoch clients see for an epoch stored on this shard. */
  epochOf(stored: string): string {
    if (this.generation === "") {
      throw new RequestError(ErrorCode.Unavailable, "redis unavailable");
    }
    return `${this.generation}.${stored}`;
  }

  /** The stored part of a client's epoch; "" if of another generation. */
  storedEpoch(epoch: string): string {
    const dot = epoch.indexOf(".");
    return epoch.slice(0, dot) === this.generation ? epoch.slice(dot + 1) : "";
  }

  /** Runs a script; a Redis failure becomes `unavailable`. */
  run(script: RedisScript, keys: string[], args: string[]): Promise<unknown> {
    return this.guard(() => script.run(this.store, keys, args));
  }

  /** Runs `call`; a Redis failure becomes `unavailable`. */
  async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.log.debug({ err: String(error) }, "redis call failed");
      throw new RequestError(ErrorCode.Unavailable, "redis unavailable");
    }
  }

  /** Records that this incarnation holds presence in `channel`. */
  async indexPresence(channel: string): Promise<void> {
    if (this.presenceChannels.has(channel)) return;
    const { channels } = nodeKeys(this.options.incarnation);
    await this.guard(() =>
      this.store.send(channels, ["SADD", channels, channel]),
    );
    this.presenceChannels.add(channel);
  }

  /** Refreshes this incarnation's liveness key and the shard set. */
  async beAlive(): Promise<void> {
    const { incarnation, presenceTtl } = this.options;
    const { alive } = nodeKeys(incarnation);
    try {
      await this.checkShardSet();
      // Two commands, not MULTI: on a cluster the keys are in two slots.
      await this.store.send(NODES_KEY, ["SADD", NODES_KEY, incarnation]);
      await this.store.send(alive, [
        "SET",
        alive,
        "1",
        "PX",
        String(presenceTtl),
      ]);
    } catch (error) {
      this.log.warn({ err: String(error) }, "liveness refresh failed");
    }
  }

  /**
   * Removes the presence of incarnations whose liveness key ran out,
   * channel by channel, each in one step, so every leave is sent once
   * whichever node gets there first.
   */
  async reap(): Promise<void> {
    try {
      const { store } = this;
      for (const incarnation of await this.members(NODES_KEY)) {
        if (incarnation === this.options.incarnation) continue;
        const node = nodeKeys(incarnation);
        if ((await store.send(node.alive, ["EXISTS", node.alive])) === 1) {
          continue;
        }
        for (const channel of await this.members(node.channels)) {
          const keys = channelKeys(channel);
          await presenceReapScript.run(
            store,
            [keys.presence, keys.users, keys.lingering],
            [incarnation, keys.topic],
          );
        }
        await store.send(node.channels, ["DEL", node.channels]);
        await store.send(NODES_KEY, ["SREM", NODES_KEY, incarnation]);
        this.log.info({ incarnation }, "reaped a dead node");
      }
    } catch (error) {
      this.log.warn({ err: String(error) }, "reap failed");
    }
  }

  /**
   * Reads the server's run and replication ids and the shard generation
   * they belong to. A new generation makes every channel's position
   * unverifiable: the engine repairs each, which tells its subscribers.
   */
  async checkGeneration(): Promise<void> {
    const server = await this.commands.info("server");
    const replication = await this.commands.info("replication");
    // A master demoted to replica reports its new master's replication
    // id: a generation of no master at all. Until the slot map is read
    // again, the shard keeps the one it had rather than report every
    // channel lost twice, once here and once on the promoted replica.
    if (this.sharded && /^role:slave\b/m.test(replication)) {
      this.options.stale?.();
      return;
    }
    const ids = redisIds(server, replication);
    const generation = this.sharded
      ? clusterGeneration(ids)
      : String(
          await generationScript.run(
            serverStore(() => this.commands),
            [SHARD_KEY],
            [ids.run, ids.repl],
          ),
        );
    if (generation === this.generation) return;
    const previous = this.generation;
    this.generation = generation;
    this.checkHealth();
    if (previous === "") return;
    // Redis may have lost the index of this node's presence channels too.
    this.presenceChannels.clear();
    this.log.warn(
      { previous, generation },
      "redis restarted or failed over: new generation",
    );
    this.options.lost();
  }

  /** Closes both connections. */
  async close(): Promise<void> {
    this.closed = true;
    this.topics.clear();
    await Promise.allSettled([this.commands.close(), this.subscriber.close()]);
  }

  /**
   * The canary's topic; on a cluster a shard channel in a slot of this
   * master, so the canary tests this master's subscription.
   */
  private get canaryTopic(): string {
    const topic = `${NODES_KEY}:canary:${this.options.incarnation}`;
    return this.sharded ? `${topic}:{${this.canaryTag}}` : topic;
  }

  private async hearCanary(): Promise<void> {
    await this.subscribe(this.canaryTopic, (payload: string) => {
      this.canary.heard = Math.max(this.canary.heard, Number(payload));
    });
  }

  /** The members of a set. */
  private async members(key: string): Promise<string[]> {
    return (await this.store.send(key, ["SMEMBERS", key])) as string[];
  }

  private async connectCommands(): Promise<void> {
    try {
      await this.commands.connect();
      await this.checkEvictionPolicy();
      await this.checkClusterMode();
      await this.checkGeneration();
      await this.beAlive();
    } catch (error) {
      this.log.debug({ err: String(error) }, "redis connect");
    }
    this.checkHealth();
  }

  private async connectSubscriber(): Promise<void> {
    try {
      await this.subscriber.connect();
      await this.hearCanary();
      for (const [topic, listener] of this.topics) {
        try {
          await this.subscribe(topic, listener);
        } catch (error) {
          if (!this.sharded || !/^MOVED\b/.test(String(error))) throw error;
          this.topics.delete(topic);
          this.options.stale?.();
        }
      }
    } catch (error) {
      this.log.debug({ err: String(error) }, "redis subscriber connect");
    }
    this.checkHealth();
  }

  /** A subscriber connection that repairs every channel when it is back. */
  private newSubscriber(): RedisClient {
    const subscriber = this.commands.duplicate();
    subscriber.on("error", (error: Error) =>
      this.log.debug({ err: error.message }, "redis subscriber error"),
    );
    // Pub/sub traffic may have been lost while the link was down: the
    // engine reads every channel's stream from where the node stood.
    subscriber.on("ready", () => {
      this.checkHealth();
      if (subscriber === this.subscriber) this.options.lost();
    });
    subscriber.on("end", () => this.checkHealth());
    // Redis drops the shard channels of a slot that left this master.
    subscriber.on("sharded-channel-moved", (topic: string) => {
      if (subscriber !== this.subscriber || !this.topics.has(topic)) return;
      this.topics.delete(topic);
      this.options.stale?.();
    });
    return subscriber;
  }

  /** Replaces the subscriber connection and listens to every topic again. */
  private async rebuildSubscriber(): Promise<void> {
    const deaf = this.subscriber;
    this.subscriber = this.newSubscriber();
    this.canary.heard = this.canary.sent;
    this.canary.acked = this.canary.sent;
    this.canary.misses = 0;
    deaf.destroy();
    await this.connectSubscriber();
    this.options.lost();
  }

  /**
   * Records the node's shard set on the server, or finds another one
   * there: then nodes would place channels differently, and this one is
   * not ready until the other set's nodes are gone (its record expires
   * `presenceTtl` after their last refresh).
   */
  private async checkShardSet(): Promise<void> {
    const { fingerprint, presenceTtl } = this.options;
    const seen = String(
      await shardSetScript.run(
        this.store,
        [SHARD_SET_KEY],
        [fingerprint, String(presenceTtl)],
      ),
    );
    this.setProblem =
      seen === fingerprint
        ? undefined
        : `shard ${this.name} is in use by nodes with shards ${seen}; ` +
          `this node has ${fingerprint}`;
    this.checkHealth();
  }

  /** Why the shard cannot serve, when it is a cluster node out of one. */
  private clusterProblem: string | undefined;

  /**
   * Named shards are standalone servers: a Redis Cluster node among them
   * would refuse the keys of every slot it does not serve.
   */
  private async checkClusterMode(): Promise<void> {
    if (this.sharded) return;
    const info = await this.commands.info("cluster");
    this.clusterProblem = isClusterInfo(info)
      ? `shard ${this.name} is a Redis Cluster node; give a cluster as ` +
        "one URL, without shard names"
      : undefined;
  }

  /** Why the shard is a cluster node it cannot use, if it is. */
  get refusal(): string | undefined {
    return this.clusterProblem;
  }

  /**
   * A Redis that evicts keys under memory pressure would drop positions
   * and streams silently: the shard is not ready unless the policy is
   * noeviction. Where CONFIG is not allowed, the node cannot tell and
   * says so once.
   */
  private async checkEvictionPolicy(): Promise<void> {
    let policy: string | undefined;
    try {
      const reply = await this.commands.configGet("maxmemory-policy");
      policy = reply["maxmemory-policy"];
    } catch (error) {
      this.log.warn(
        { err: String(error) },
        "cannot read maxmemory-policy; make sure it is noeviction",
      );
      return;
    }
    this.policyProblem =
      policy === undefined || policy === "noeviction"
        ? undefined
        : `redis maxmemory-policy is ${policy}, needs noeviction`;
  }

  /** Why the shard cannot serve now, or undefined when it can. */
  private unready(): string | undefined {
    if (this.silent.has("commands")) {
      return "redis commands connection unresponsive";
    }
    if (!this.commands.isReady) return "redis unreachable";
    if (this.generation === "") return "redis generation unknown";
    if (this.silent.has("subscriber")) {
      return "redis subscriber connection unresponsive";
    }
    if (!this.subscriber.isReady) return "redis subscriber unreachable";
    if (this.canary.misses >= CANARY_MISSES) return "redis subscriber deaf";
    return this.clusterProblem ?? this.policyProblem ?? this.setProblem;
  }

  /**
   * Whether another node incarnation is alive on this shard: then a deaf
   * node is alone in its trouble and its clients should move.
   */
  async peersAlive(): Promise<boolean> {
    const others = (await this.members(NODES_KEY)).filter(
      (incarnation) => incarnation !== this.options.incarnation,
    );
    for (const incarnation of others) {
      const { alive } = nodeKeys(incarnation);
      if ((await this.store.send(alive, ["EXISTS", alive])) === 1) {
        return true;
      }
    }
    return false;
  }

  /** Updates `health()`, logging each change once. */
  private checkHealth(): void {
    if (this.closed) return;
    const reason = this.unready();
    const deaf =
      this.commands.isReady &&
      !this.silent.has("commands") &&
      (this.silent.has("subscriber") ||
        !this.subscriber.isReady ||
        this.canary.misses >= CANARY_MISSES);
    if (!deaf) this.deafSince = undefined;
    else this.deafSince ??= Date.now();
    if (reason === this.current.reason && this.current.ready === !reason) {
      return;
    }
    const wasReady = this.current.ready;
    this.current = { ready: !reason, reason, since: Date.now() };
    if (!reason) {
      this.log.info({}, "redis shard ready");
    } else if (wasReady || reason !== CONNECTING) {
      this.log.warn({ reason }, "redis shard not ready");
    } else {
      this.log.debug({ reason }, "redis shard not ready yet");
    }
    this.options.changed();
  }
}

function withShard(logger: Logger, shard: string): Logger {
  return {
    debug: (fields, message) => logger.debug({ shard, ...fields }, message),
    info: (fields, message) => logger.info({ shard, ...fields }, message),
    warn: (fields, message) => logger.warn({ shard, ...fields }, message),
    error: (fields, message) => logger.error({ shard, ...fields }, message),
  };
}
