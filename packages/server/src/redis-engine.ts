import { randomBytes } from "node:crypto";

import {
  CONTROL_TOPIC,
  ErrorCode,
  META_PATTERN,
  PRESENCE_ADD_SCRIPT,
  PRESENCE_REMOVE_SCRIPT,
  PUBLISH_SCRIPT,
  READ_SCRIPT,
  channelKeys,
  decodeTopicPayload,
  fingerprint,
  placeShard,
  type Publisher,
} from "@switchboard/protocol";

import type {
  ControlCommand,
  Engine,
  EngineHandlers,
  EngineHealth,
  PresenceEntry,
  PresenceList,
  Publication,
  PublishOptions,
  PublishOutcome,
  ReadOptions,
  ReadOutcome,
} from "./engine.js";
import { ConfigError } from "./errors.js";
import type { KeyStore } from "./key-store.js";
import type { Logger } from "./logger.js";
import { RedisCluster, isClusterNode } from "./redis-cluster.js";
import { RedisScript } from "./redis-script.js";
import { RedisShard } from "./redis-shard.js";
import { RequestError } from "./request-error.js";
import { parseShards, type ShardAddress } from "./shard-set.js";

/** Options of the redis engine. */
export interface RedisEngineOptions {
  /**
   * `redis://host:port` of the Redis server or of one node of a Redis
   * Cluster, or named shards: `a=redis://...,b=redis://...`.
   */
  readonly url: string;
  /** How long a channel's position outlives its last publish, ms. */
  readonly historyMetaTtl: number;
  /** How long after its last local subscriber the node stops listening. */
  readonly unsubscribeLinger: number;
  /** How long a node's presence outlives its last liveness refresh. */
  readonly presenceTtl: number;
  /** How often the node refreshes its liveness key, ms. */
  readonly livenessInterval: number;
  /** How often the node looks for dead incarnations to reap, ms. */
  readonly reapInterval: number;
  /** How often a canary goes through the node's own subscription, ms. */
  readonly canaryInterval: number;
  /**
   * How long a shard may stay deaf while peers are alive before the node
   * moves the clients of its channels away; 0 never does.
   */
  readonly deafDrainAfter: number;
  /** How often each Redis connection is PINGed, ms. */
  readonly pingInterval: number;
  /** How long a PING may go unanswered before its connection is replaced. */
  readonly timeout: number;
  /** How often each channel's stored top is compared with what the node
   * delivered, ms. */
  readonly positionCheckInterval: number;
  readonly logger: Logger;
}

const publishScript = new RedisScript(PUBLISH_SCRIPT);
const readScript = new RedisScript(READ_SCRIPT);
const presenceAddScript = new RedisScript(PRESENCE_ADD_SCRIPT);
const presenceRemoveScript = new RedisScript(PRESENCE_REMOVE_SCRIPT);

type StreamEntry = [id: string, fields: string[]];

/** How long `start` waits for Redis before the node starts not ready. */
const STARTUP_WAIT_MS = 5_000;

/** Most entries one repair read fetches; it loops for more. */
const REPAIR_BATCH = 500;

/** Wait before a repair that failed (Redis away) is tried again, ms. */
const REPAIR_RETRY_MS = 500;

/** Wait before asking an unreachable Redis again whether it is a cluster. */
const DETECT_RETRY_MS = 500;

/**
 * The node's view of one channel: its subscription to the topic and the
 * position it last delivered, from which it repairs what pub/sub lost.
 */
interface ChannelState {
  /** The shard the channel lives on; on a cluster, the slot's master. */
  shard: RedisShard;
  /** What the node does with the topic's payloads. */
  readonly listener: (payload: string) => void;
  /** Local subscribers that asked for the channel. */
  count: number;
  /** Resolves once Redis confirmed the subscription and the position. */
  ready: Promise<void>;
  /** Pending unsubscribe after the last local subscriber left. */
  linger: NodeJS.Timeout | undefined;
  /** Position last delivered; epoch "" until known. */
  epoch: string;
  offset: number;
  /** Publications held while a repair reads the stream. */
  held: Publication[] | undefined;
  repairing: boolean;
}

/**
 * The engine of a fleet: positions, history and presence in Redis, fan-out
 * between nodes by pub/sub. A node listens to a channel's topic only while
 * it has local subscribers there.
 */
export class RedisEngine implements Engine {
  /** The shards, sorted by name; on a cluster, its masters. */
  private shards: readonly RedisShard[] = [];
  /** The Redis Cluster, when the one URL is a node of one. */
  private cluster: RedisCluster | undefined;
  /** The one shard of a plain URL, until it is known not to be a cluster. */
  private readonly single: ShardAddress | undefined;
  private readonly set: string;
  /** The shard listening to the control topic. */
  private controlShard: RedisShard | undefined;
  private readonly states = new Map<string, ChannelState>();
  private handlers: EngineHandlers | undefined;
  /** This process's identity in presence entries; random at each start. */
  private readonly incarnation = randomBytes(9).toString("base64url");
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** Removals of lingering presence entries, pending. */
  private readonly lingering = new Set<NodeJS.Timeout>();
  private healthy: EngineHealth = {
    ready: false,
    reason: "connecting to redis",
    since: Date.now(),
  };

  constructor(private readonly options: RedisEngineOptions) {
    const addresses = parseShards(options.url);
    this.set = fingerprint(addresses);
    if (addresses.length === 1) {
      this.single = addresses[0];
      return;
    }
    this.useShards(addresses);
  }

  /** A shard of `address`; on a cluster, a master keeping keys in `store`. */
  private newShard(address: ShardAddress, store?: KeyStore): RedisShard {
    return new RedisShard({
      address,
      fingerprint: this.set,
      incarnation: this.incarnation,
      presenceTtl: this.options.presenceTtl,
      pingInterval: this.options.pingInterval,
      timeout: this.options.timeout,
      logger: this.options.logger,
      lost: () => this.repairShard(address.name),
      changed: () => this.checkHealth(),
      ...(store && {
        cluster: store,
        stale: () => void this.cluster?.refresh().catch(() => undefined),
      }),
    });
  }

  /** Standalone servers: the shards are fixed from the start. */
  private useShards(addresses: readonly ShardAddress[]): void {
    this.shards = addresses.map((address) => this.newShard(address));
    this.controlShard = this.shards[0]!;
    this.controlShard.keep(CONTROL_TOPIC, this.obeyListener);
  }

  private readonly obeyListener = (payload: string): void => this.obey(payload);

  /**
   * Publishes a control command on the control topic, which every node
   * listens to on the first shard by name (on a cluster, on the master of
   * the topic's slot).
   */
  async control(command: ControlCommand): Promise<void> {
    const shard = this.controlShard ?? this.unavailable();
    const payload = JSON.stringify({ inc: this.incarnation, ...command });
    const { store } = shard;
    await shard.guard(() =>
      store.send(CONTROL_TOPIC, [store.publish, CONTROL_TOPIC, payload]),
    );
  }

  private unavailable(): never {
    throw new RequestError(ErrorCode.Unavailable, "redis unavailable");
  }

  /** Applies another node's control command; drops what it cannot read. */
  private obey(payload: string): void {
    let command: (ControlCommand & { inc?: unknown }) | undefined;
    try {
      command = JSON.parse(payload) as ControlCommand & { inc?: unknown };
    } catch {
      command = undefined;
    }
    if (command?.inc === this.incarnation) return;
    if (
      (command?.type !== "disconnect" && command?.type !== "unsubscribe") ||
      typeof command.user !== "string"
    ) {
      this.options.logger.debug({}, "unknown control payload");
      return;
    }
    this.handlers?.control(command);
  }

  health(): EngineHealth {
    return this.healthy;
  }

  /**
   * Connects in the background: the node serves what needs no Redis at
   * once, and is ready when Redis is (waiting up to STARTUP_WAIT_MS).
   */
  async start(handlers: EngineHandlers): Promise<void> {
    this.handlers = handlers;
    const ready = this.single
      ? this.connectSingle(this.single)
      : Promise.all(this.shards.map((shard) => shard.connect()));
    const { options } = this;
    const every = (ms: number, act: (shard: RedisShard) => unknown) =>
      setInterval(() => {
        for (const shard of this.shards) void act(shard);
      }, ms);
    // On a cluster the node's liveness and index are keys of the whole
    // cluster: one master's shard keeps them.
    const keeper = (ms: number, act: (shard: RedisShard) => unknown) =>
      setInterval(() => {
        const shards = this.cluster ? this.shards.slice(0, 1) : this.shards;
        for (const shard of shards) void act(shard);
      }, ms);
    this.timers = [
      keeper(options.livenessInterval, (shard) => shard.beAlive()),
      keeper(options.reapInterval, (shard) => shard.reap()),
      every(options.canaryInterval, (shard) => shard.sing()),
      setInterval(
        () => void this.cluster?.refresh().catch(() => undefined),
        options.canaryInterval,
      ),
      every(options.pingInterval, (shard) => shard.probe()),
      every(options.canaryInterval, (shard) => this.checkDeaf(shard)),
      setInterval(
        () => void this.checkPositions(),
        this.options.positionCheckInterval,
      ),
    ];
    for (const timer of this.timers) timer.unref();
    await Promise.race([ready, sleep(STARTUP_WAIT_MS)]);
    const refusal = this.shards.find((shard) => shard.refusal)?.refusal;
    if (refusal) {
      await this.close();
      throw new ConfigError(`redisUrl: ${refusal}`);
    }
    this.checkHealth();
    // Said once at warn: an operator with a wrong URL or an unsuitable
    // server sees why in the log, not only on /readyz.
    const health = this.health();
    if (!health.ready) {
      this.options.logger.warn(
        { reason: health.reason },
        "redis engine not ready at start; serving what needs no redis",
      );
    }
  }

  /**
   * Asks the one Redis whether it is a cluster node, until it answers,
   * then uses it as a standalone shard or as the cluster it belongs to.
   */
  private async connectSingle(address: ShardAddress): Promise<void> {
    let cluster: boolean | undefined;
    while (cluster === undefined && !this.closed) {
      try {
        cluster = await isClusterNode(address.url);
      } catch (error) {
        this.options.logger.debug({ err: String(error) }, "redis connect");
        // A timer that holds the process: until Redis answers, this loop
        // is what a node with no listener yet is waiting for.
        await new Promise((resolve) => setTimeout(resolve, DETECT_RETRY_MS));
      }
    }
    if (this.closed) return;
    if (!cluster) {
      this.useShards([address]);
      await this.shards[0]!.connect();
      return;
    }
    this.cluster = new RedisCluster({
      url: address.url,
      logger: this.options.logger,
      shard: (master, store) => this.newShard(master, store),
      changed: () => this.replace(),
    });
    this.options.logger.info({}, "redis is a cluster: sharded pub/sub");
    while (!this.closed) {
      try {
        await this.cluster.connect();
        return;
      } catch (error) {
        this.options.logger.debug({ err: String(error) }, "redis connect");
        // A timer that holds the process: until Redis answers, this loop
        // is what a node with no listener yet is waiting for.
        await new Promise((resolve) => setTimeout(resolve, DETECT_RETRY_MS));
      }
    }
  }

  /**
   * After the cluster's masters or slots changed: every channel, and the
   * control topic, listens on the master of its slot, and a channel that
   * moved is repaired from its last delivered position.
   */
  private replace(): void {
    const cluster = this.cluster;
    if (!cluster || this.closed) return;
    this.shards = cluster.shards();
    const control = cluster.ownerOf(CONTROL_TOPIC);
    if (
      control &&
      (control !== this.controlShard || !control.hears(CONTROL_TOPIC))
    ) {
      const previous = this.controlShard;
      this.controlShard = control;
      if (previous !== control) {
        void previous?.unlisten(CONTROL_TOPIC).catch(() => undefined);
      }
      control.keep(CONTROL_TOPIC, this.obeyListener);
      void control
        .listen(CONTROL_TOPIC, this.obeyListener)
        .catch(() => undefined);
    }
    for (const [channel, state] of this.states) {
      const topic = channelKeys(channel).topic;
      const owner = cluster.ownerOf(topic);
      if (!owner || (owner === state.shard && owner.hears(topic))) continue;
      void this.move(channel, state, owner);
    }
    this.checkHealth();
  }

  /** Listens to a channel on its new master, then repairs it. */
  private async move(
    channel: string,
    state: ChannelState,
    owner: RedisShard,
  ): Promise<void> {
    const topic = channelKeys(channel).topic;
    const previous = state.shard;
    state.shard = owner;
    if (previous !== owner) {
      void previous.unlisten(topic).catch(() => undefined);
    }
    try {
      await owner.listen(topic, state.listener);
    } catch (error) {
      // The next slot map read tries again.
      this.options.logger.debug(
        { channel, err: String(error) },
        "redis cluster resubscribe failed",
      );
      return;
    }
    this.options.logger.debug(
      { channel, shard: owner.name },
      "channel listens on another master",
    );
    if (state.epoch !== "") void this.repair(channel, state);
  }

  /** Shards whose clients were moved away in their current deafness. */
  private readonly moved = new Set<RedisShard>();

  /**
   * Moves the local subscribers of a shard's channels to other nodes once
   * the shard has been deaf for `deafDrainAfter` while peers are alive:
   * they hear what this node cannot.
   */
  private async checkDeaf(shard: RedisShard): Promise<void> {
    const { deafDrainAfter } = this.options;
    if (shard.deafSince === undefined) {
      this.moved.delete(shard);
      return;
    }
    if (
      deafDrainAfter === 0 ||
      this.moved.has(shard) ||
      Date.now() - shard.deafSince < deafDrainAfter
    ) {
      return;
    }
    try {
      if (!(await shard.peersAlive())) return;
    } catch {
      return;
    }
    this.moved.add(shard);
    const channels = [...this.states.entries()]
      .filter(([, state]) => state.shard === shard)
      .map(([channel]) => channel);
    this.options.logger.warn(
      { shard: shard.name, channels: channels.length },
      "redis shard deaf while peers are alive: moving its clients away",
    );
    this.handlers?.deaf(channels);
  }

  /** The shard `channel` lives on. */
  private shardOf(channel: string): RedisShard {
    if (this.cluster) {
      return (
        this.cluster.ownerOf(channelKeys(channel).topic) ?? this.unavailable()
      );
    }
    if (this.shards.length === 0) this.unavailable();
    return this.shards.length === 1
      ? this.shards[0]!
      : placeShard(this.shards, channel);
  }

  /** Repairs every channel of a shard whose pub/sub traffic was lost. */
  private repairShard(name: string): void {
    for (const [channel, state] of this.states) {
      if (state.shard.name === name && state.epoch !== "") {
        void this.repair(channel, state);
      }
    }
  }

  /**
   * The engine's health: the first shard, by name, that cannot serve, or
   * ready since the last shard became ready. Logs each change once.
   */
  private checkHealth(): void {
    if (this.closed) return;
    const unready = this.shards.find((shard) => !shard.health().ready);
    const next: EngineHealth =
      this.shards.length === 0
        ? this.healthy
        : unready
          ? { ...unready.health(), shard: unready.name }
          : {
              ready: true,
              since: Math.max(...this.shards.map((s) => s.health().since)),
            };
    const previous = this.healthy;
    if (
      next.ready === previous.ready &&
      next.reason === previous.reason &&
      next.shard === previous.shard
    ) {
      return;
    }
    this.healthy = next;
    if (next.ready) {
      this.options.logger.info({}, "redis engine ready");
    } else if (previous.ready) {
      this.options.logger.warn(
        { shard: next.shard, reason: next.reason },
        "redis engine not ready",
      );
    }
  }

  /**
   * Stops without removing this node's presence: its liveness key runs
   * out and another node reaps what no returning session replaced.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const timer of this.lingering) clearTimeout(timer);
    this.lingering.clear();
    this.handlers = undefined;
    for (const state of this.states.values()) clearTimeout(state.linger);
    this.states.clear();
    await Promise.allSettled([
      ...this.shards.map((shard) => shard.close()),
      this.cluster?.close(),
    ]);
  }

  async publish(
    channel: string,
    data: string,
    options: PublishOptions,
  ): Promise<PublishOutcome> {
    const keys = channelKeys(channel);
    const shard = this.shardOf(channel);
    const reply = (await shard.run(
      publishScript,
      [keys.meta, keys.stream, keys.idempotency(options.key ?? "")],
      [
        data,
        options.publisher ? JSON.stringify(options.publisher) : "",
        String(options.historySize),
        String(options.historyTtl),
        String(this.options.historyMetaTtl),
        String(options.key ? options.idempotencyWindow : 0),
        newEpoch(),
        keys.topic,
      ],
    )) as [string, number, number];
    return {
      epoch: shard.epochOf(reply[0]),
      offset: reply[1],
      duplicate: reply[2] === 1,
    };
  }

  async read(channel: string, options: ReadOptions): Promise<ReadOutcome> {
    const keys = channelKeys(channel);
    const { since } = options;
    const shard = this.shardOf(channel);
    const reply = (await shard.run(
      readScript,
      [keys.meta, keys.stream],
      [
        since ? shard.storedEpoch(since.epoch) : "",
        String(since?.offset ?? 0),
        String(options.limit),
        options.reverse ? "1" : "0",
        newEpoch(),
        String(this.options.historyMetaTtl),
      ],
    )) as [string, number, number, StreamEntry[]];
    const [stored, offset, oldest, entries] = reply;
    const epoch = shard.epochOf(stored);
    return {
      epoch,
      offset,
      oldest,
      publications: entries.map((entry) =>
        toPublication(channel, epoch, entry),
      ),
    };
  }

  async subscribe(channel: string): Promise<void> {
    const current = this.states.get(channel);
    if (current) {
      current.count += 1;
      clearTimeout(current.linger);
      current.linger = undefined;
      return current.ready;
    }
    const state: ChannelState = {
      shard: this.shardOf(channel),
      listener: (payload: string) => this.hear(channel, state, payload),
      count: 1,
      ready: Promise.resolve(),
      linger: undefined,
      epoch: "",
      offset: 0,
      held: undefined,
      repairing: false,
    };
    this.states.set(channel, state);
    state.ready = this.listen(channel, state);
    state.ready.catch(() => {
      if (this.states.get(channel) === state) this.states.delete(channel);
    });
    return state.ready;
  }

  unsubscribe(channel: string): void {
    const state = this.states.get(channel);
    if (!state || --state.count > 0) return;
    state.linger = setTimeout(() => {
      if (this.states.get(channel) !== state || state.count > 0) return;
      this.states.delete(channel);
      state.shard
        .unlisten(channelKeys(channel).topic)
        .catch((error: Error) =>
          this.options.logger.warn(
            { channel, err: error.message },
            "redis unsubscribe failed",
          ),
        );
    }, this.options.unsubscribeLinger);
    state.linger.unref();
  }

  async addPresence(entry: PresenceEntry): Promise<void> {
    const keys = channelKeys(entry.channel);
    const shard = this.shardOf(entry.channel);
    await shard.indexPresence(entry.channel);
    await shard.run(
      presenceAddScript,
      [keys.presence, keys.users, keys.lingering],
      [
        entry.client,
        entry.user,
        JSON.stringify({
          user: entry.user,
          session: entry.session,
          inc: this.incarnation,
        }),
        keys.topic,
        JSON.stringify({ user: entry.user, client: entry.client }),
        entry.session,
      ],
    );
  }

  async removePresence(entry: PresenceEntry, linger: number): Promise<void> {
    const keys = channelKeys(entry.channel);
    const shard = this.shardOf(entry.channel);
    if (linger > 0) {
      // Marked, so the session's return on any node replaces it silently.
      await shard.guard(() =>
        shard.store.send(keys.lingering, [
          "HSET",
          keys.lingering,
          entry.session,
          entry.client,
        ]),
      );
      const timer = setTimeout(() => {
        this.lingering.delete(timer);
        // Redis may be away by then: the entry is reaped after presenceTtl.
        this.removePresence(entry, 0).catch(() => undefined);
      }, linger);
      timer.unref();
      this.lingering.add(timer);
      return;
    }
    await shard.run(
      presenceRemoveScript,
      [keys.presence, keys.users, keys.lingering],
      [
        entry.client,
        entry.user,
        keys.topic,
        JSON.stringify({ user: entry.user, client: entry.client }),
        entry.session,
      ],
    );
  }

  async presence(channel: string, max: number): Promise<PresenceList> {
    const key = channelKeys(channel).presence;
    const shard = this.shardOf(channel);
    const entries = hashEntries(
      await shard.guard(() => shard.store.send(key, ["HGETALL", key])),
    );
    return {
      members: entries.slice(0, max).map(([client, entry]) => ({
        user: (JSON.parse(entry) as { user: string }).user,
        client,
      })),
      truncated: entries.length > max,
    };
  }

  async channels(): Promise<string[]> {
    const channels = new Set<string>();
    for (const shard of this.shards) {
      await shard.guard(async () => {
        for await (const batch of shard.commands.scanIterator({
          MATCH: META_PATTERN,
          COUNT: 1000,
        })) {
          for (const key of batch) channels.add(key.slice(6, -3));
        }
      });
    }
    return [...channels];
  }

  /**
   * Compares each channel's stored top with what the node delivered and
   * repairs behind ones: the last message of a quiet channel, lost by
   * pub/sub, is found within one interval.
   */
  private async checkPositions(): Promise<void> {
    for (const [channel, state] of this.states) {
      if (state.epoch === "" || state.repairing) continue;
      if (!state.shard.commands.isReady) continue;
      try {
        const top = await this.read(channel, {
          since: undefined,
          limit: 0,
          reverse: false,
        });
        if (top.epoch !== state.epoch || top.offset > state.offset) {
          void this.repair(channel, state);
        }
      } catch {
        continue;
      }
    }
  }

  /**
   * Subscribes to a channel's topic and, once Redis confirmed it, reads
   * the position the node starts from; messages heard meanwhile count.
   */
  private async listen(channel: string, state: ChannelState): Promise<void> {
    await state.shard.listen(channelKeys(channel).topic, state.listener);
    const position = await this.read(channel, {
      since: undefined,
      limit: 0,
      reverse: false,
    });
    if (state.epoch === "" || state.epoch !== position.epoch) {
      state.epoch = position.epoch;
      state.offset = position.offset;
    } else {
      state.offset = Math.max(state.offset, position.offset);
    }
  }

  /** Decodes a topic payload once for the node, then hands it over. */
  private hear(channel: string, state: ChannelState, payload: string): void {
    const decoded = decodeTopicPayload(payload);
    if (!decoded) {
      this.options.logger.debug({ channel }, "unknown topic payload");
      return;
    }
    const { shard } = state;
    if (shard.generation === "") return;
    if (decoded.kind !== "message") {
      this.handlers?.presence({
        type: decoded.kind,
        channel,
        user: decoded.user,
        client: decoded.client,
        users: decoded.users,
      });
      return;
    }
    this.accept(channel, state, {
      channel,
      epoch: shard.epochOf(decoded.epoch),
      offset: decoded.offset,
      data: decoded.data,
      publisher: decoded.publisher
        ? (JSON.parse(decoded.publisher) as Publisher)
        : undefined,
    });
  }

  /**
   * Delivers in offset order: drops what was delivered, holds everything
   * behind a gap while a repair reads the missing entries.
   */
  private accept(
    channel: string,
    state: ChannelState,
    publication: Publication,
  ): void {
    if (state.held) {
      state.held.push(publication);
      return;
    }
    if (state.epoch === publication.epoch) {
      if (publication.offset <= state.offset) return;
      if (publication.offset > state.offset + 1) {
        state.held = [publication];
        void this.repair(channel, state);
        return;
      }
    }
    state.epoch = publication.epoch;
    state.offset = publication.offset;
    this.handlers?.publication(publication);
  }

  /**
   * Reads the stream from the delivered position and delivers what is
   * missing before anything held. When the stream no longer has it, the
   * local subscribers are told to resubscribe.
   */
  private async repair(channel: string, state: ChannelState): Promise<void> {
    if (state.repairing) return;
    state.repairing = true;
    state.held ??= [];
    try {
      for (;;) {
        const read = await this.read(channel, {
          since: { epoch: state.epoch, offset: state.offset },
          limit: REPAIR_BATCH,
          reverse: false,
        });
        if (read.epoch !== state.epoch) {
          // A new stream (Redis lost the channel, or a new generation):
          // nothing delivered before can be vouched for. Subscribers
          // resubscribe and learn they cannot recover.
          state.epoch = read.epoch;
          state.offset = read.offset;
          this.handlers?.insufficient(channel);
          break;
        }
        if (read.oldest > state.offset + 1 && read.offset > state.offset) {
          state.offset = read.offset;
          this.handlers?.insufficient(channel);
          break;
        }
        for (const publication of read.publications) {
          state.offset = publication.offset;
          this.handlers?.publication(publication);
        }
        if (read.publications.length < REPAIR_BATCH) break;
      }
    } catch (error) {
      state.repairing = false;
      this.options.logger.warn(
        { channel, err: String(error) },
        "repair failed; retrying",
      );
      setTimeout(
        () => void this.repair(channel, state),
        REPAIR_RETRY_MS,
      ).unref();
      return;
    }
    const held = state.held;
    state.held = undefined;
    state.repairing = false;
    for (const publication of held) this.accept(channel, state, publication);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** The fields of an HGETALL reply, as a map or as a flat list. */
function hashEntries(reply: unknown): [string, string][] {
  if (!Array.isArray(reply)) {
    return Object.entries(reply as Record<string, string>);
  }
  const entries: [string, string][] = [];
  for (let i = 0; i + 1 < reply.length; i += 2) {
    entries.push([String(reply[i]), String(reply[i + 1])]);
  }
  return entries;
}

function newEpoch(): string {
  return randomBytes(6).toString("base64url");
}

function toPublication(
  channel: string,
  epoch: string,
  [id, fields]: StreamEntry,
): Publication {
  const publisher = fields[fields.indexOf("p") + 1];
  return {
    channel,
    epoch,
    offset: Number(id.slice(0, id.indexOf("-"))),
    data: fields[fields.indexOf("d") + 1] ?? "null",
    publisher: publisher ? (JSON.parse(publisher) as Publisher) : undefined,
  };
}
