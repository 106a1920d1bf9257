import { randomBytes } from "node:crypto";

import {
  ErrorCode,
  GENERATION_SCRIPT,
  META_PATTERN,
  NODES_KEY,
  PRESENCE_ADD_SCRIPT,
  PRESENCE_REAP_SCRIPT,
  PRESENCE_REMOVE_SCRIPT,
  PUBLISH_SCRIPT,
  READ_SCRIPT,
  SHARD_KEY,
  channelKeys,
  decodeTopicPayload,
  nodeKeys,
  type Publisher,
} from "@switchboard/protocol";
import { createClient } from "redis";

import type {
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
import type { Logger } from "./logger.js";
import { RedisScript, type RedisClient } from "./redis-script.js";
import { RequestError } from "./request-error.js";

/** Options of the redis engine. */
export interface RedisEngineOptions {
  /** `redis://host:port` of the Redis server. */
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
  /** How often each channel's stored top is compared with what the node
   * delivered, ms. */
  readonly positionCheckInterval: number;
  readonly logger: Logger;
}

const publishScript = new RedisScript(PUBLISH_SCRIPT);
const readScript = new RedisScript(READ_SCRIPT);
const presenceAddScript = new RedisScript(PRESENCE_ADD_SCRIPT);
const presenceRemoveScript = new RedisScript(PRESENCE_REMOVE_SCRIPT);
const presenceReapScript = new RedisScript(PRESENCE_REAP_SCRIPT);
const generationScript = new RedisScript(GENERATION_SCRIPT);

type StreamEntry = [id: string, fields: string[]];

/** Canaries missed in a row before the node calls itself deaf. */
const CANARY_MISSES = 3;

/** How long `start` waits for Redis before the node starts not ready. */
const STARTUP_WAIT_MS = 5_000;

/** Most entries one repair read fetches; it loops for more. */
const REPAIR_BATCH = 500;

/** Wait before a repair that failed (Redis away) is tried again, ms. */
const REPAIR_RETRY_MS = 500;

/**
 * The node's view of one channel: its subscription to the topic and the
 * position it last delivered, from which it repairs what pub/sub lost.
 */
interface ChannelState {
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
  private readonly commands: RedisClient;
  private subscriber: RedisClient;
  private readonly states = new Map<string, ChannelState>();
  private handlers: EngineHandlers | undefined;
  /** This process's identity in presence entries; random at each start. */
  private readonly incarnation = randomBytes(9).toString("base64url");
  /** Channels where this incarnation has announced presence. */
  private readonly presenceChannels = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** Why the server's eviction policy makes the node not ready. */
  private policyProblem: string | undefined;
  /** Removals of lingering presence entries, pending. */
  private readonly lingering = new Set<NodeJS.Timeout>();
  /**
   * The shard's generation, first part of every epoch clients see; ""
   * until known. It advances when the Redis server restarts or fails over.
   */
  private generation = "";
  /** Canaries published, and the last one heard back. */
  private readonly canary = { sent: 0, heard: 0, misses: 0 };
  private healthy: EngineHealth = {
    ready: false,
    reason: "connecting to redis",
    since: Date.now(),
  };

  constructor(private readonly options: RedisEngineOptions) {
    // Without Redis, requests fail at once with `unavailable` rather than
    // waiting in a queue the client cannot see.
    this.commands = createClient({
      url: options.url,
      disableOfflineQueue: true,
    });
    this.subscriber = this.newSubscriber();
    this.commands.on("error", (error: Error) =>
      options.logger.debug({ err: error.message }, "redis commands error"),
    );
    // A restarted or failed-over server shows first as a reconnect.
    this.commands.on("ready", () => {
      if (this.generation === "") return;
      this.checkGeneration().catch((error) =>
        options.logger.debug({ err: String(error) }, "generation check"),
      );
    });
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
    const ready = Promise.all([
      this.connect(this.commands),
      this.connect(this.subscriber),
    ]);
    const { livenessInterval, reapInterval, canaryInterval } = this.options;
    this.timers = [
      setInterval(() => void this.beAlive(), livenessInterval),
      setInterval(() => void this.reap(), reapInterval),
      setInterval(() => this.sing(), canaryInterval),
      setInterval(
        () => void this.checkPositions(),
        this.options.positionCheckInterval,
      ),
    ];
    for (const timer of this.timers) timer.unref();
    await Promise.race([ready, sleep(STARTUP_WAIT_MS)]);
    this.checkHealth();
  }

  /** A subscriber connection that repairs every channel when it is back. */
  private newSubscriber(): RedisClient {
    const subscriber = this.commands.duplicate();
    subscriber.on("error", (error: Error) =>
      this.options.logger.debug(
        { err: error.message },
        "redis subscriber error",
      ),
    );
    // Pub/sub traffic may have been lost while the link was down: read
    // every channel's stream from where the node stood.
    subscriber.on("ready", () => {
      this.checkHealth();
      for (const [channel, state] of this.states) {
        if (state.epoch !== "") void this.repair(channel, state);
      }
    });
    subscriber.on("end", () => this.checkHealth());
    return subscriber;
  }

  private async connect(client: RedisClient): Promise<void> {
    try {
      await client.connect();
      if (client === this.subscriber) {
        await client.subscribe(this.canaryTopic, (payload: string) => {
          this.canary.heard = Math.max(this.canary.heard, Number(payload));
        });
      } else {
        await this.checkEvictionPolicy();
        await this.checkGeneration();
        await this.beAlive();
      }
    } catch (error) {
      this.options.logger.debug({ err: String(error) }, "redis connect");
    }
    this.checkHealth();
  }

  private get canaryTopic(): string {
    return `${NODES_KEY}:canary:${this.incarnation}`;
  }

  /**
   * Publishes a canary the node's own subscription must hear before the
   * next one; after CANARY_MISSES misses the node is deaf: not ready, and
   * it rebuilds its subscriber connection rather than trust it.
   */
  private sing(): void {
    const { canary } = this;
    canary.misses = canary.heard < canary.sent ? canary.misses + 1 : 0;
    this.checkHealth();
    if (canary.misses >= CANARY_MISSES && this.subscriber.isReady) {
      void this.rebuildSubscriber();
    }
    if (!this.commands.isReady) return;
    this.checkGeneration().catch((error) =>
      this.options.logger.debug({ err: String(error) }, "generation check"),
    );
    canary.sent += 1;
    this.commands
      .publish(this.canaryTopic, String(canary.sent))
      .catch(() => undefined);
  }

  /** Replaces the subscriber connection and resubscribes every channel. */
  private async rebuildSubscriber(): Promise<void> {
    const deaf = this.subscriber;
    this.subscriber = this.newSubscriber();
    this.canary.heard = this.canary.sent;
    this.canary.misses = 0;
    deaf.destroy();
    await this.connect(this.subscriber);
    for (const [channel, state] of this.states) {
      await this.subscriber
        .subscribe(channelKeys(channel).topic, (payload: string) =>
          this.hear(channel, state, payload),
        )
        .catch(() => undefined);
      void this.repair(channel, state);
    }
  }

  /** Why the engine cannot serve now, or undefined when it can. */
  private unready(): string | undefined {
    if (!this.commands.isReady) return "redis unreachable";
    if (this.generation === "") return "redis generation unknown";
    if (!this.subscriber.isReady) return "redis subscriber unreachable";
    if (this.canary.misses >= CANARY_MISSES) return "redis subscriber deaf";
    return this.policyProblem;
  }

  /**
   * A Redis that evicts keys under memory pressure would drop positions
   * and streams silently: the node is not ready unless the policy is
   * noeviction. Where CONFIG is not allowed, the node cannot tell and
   * says so once.
   */
  private async checkEvictionPolicy(): Promise<void> {
    let policy: string | undefined;
    try {
      const reply = await this.commands.configGet("maxmemory-policy");
      policy = reply["maxmemory-policy"];
    } catch (error) {
      this.options.logger.warn(
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

  /** Updates `health()`, logging each change once. */
  private checkHealth(): void {
    if (this.closed) return;
    const reason = this.unready();
    if (reason === this.healthy.reason && this.healthy.ready === !reason) {
      return;
    }
    const wasReady = this.healthy.ready;
    this.healthy = { ready: !reason, reason, since: Date.now() };
    if (!reason) {
      this.options.logger.info({}, "redis engine ready");
    } else if (wasReady) {
      this.options.logger.warn({ reason }, "redis engine not ready");
    } else {
      this.options.logger.debug({ reason }, "redis engine not ready yet");
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
    await Promise.allSettled([this.commands.close(), this.subscriber.close()]);
  }

  async publish(
    channel: string,
    data: string,
    options: PublishOptions,
  ): Promise<PublishOutcome> {
    const keys = channelKeys(channel);
    const reply = (await this.run(
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
      epoch: this.epochOf(reply[0]),
      offset: reply[1],
      duplicate: reply[2] === 1,
    };
  }

  async read(channel: string, options: ReadOptions): Promise<ReadOutcome> {
    const keys = channelKeys(channel);
    const { since } = options;
    const reply = (await this.run(
      readScript,
      [keys.meta, keys.stream],
      [
        since ? this.storedEpoch(since.epoch) : "",
        String(since?.offset ?? 0),
        String(options.limit),
        options.reverse ? "1" : "0",
        newEpoch(),
        String(this.options.historyMetaTtl),
      ],
    )) as [string, number, number, StreamEntry[]];
    const [stored, offset, oldest, entries] = reply;
    const epoch = this.epochOf(stored);
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
      this.subscriber
        .unsubscribe(channelKeys(channel).topic)
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
    if (!this.presenceChannels.has(entry.channel)) {
      const { channels } = nodeKeys(this.incarnation);
      await this.guard(() => this.commands.sAdd(channels, entry.channel));
      this.presenceChannels.add(entry.channel);
    }
    await this.run(
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
    if (linger > 0) {
      // Marked, so the session's return on any node replaces it silently.
      await this.guard(() =>
        this.commands.hSet(keys.lingering, entry.session, entry.client),
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
    await this.run(
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
    const entries = await this.guard(() => this.commands.hGetAll(key));
    const clients = Object.keys(entries);
    return {
      members: clients.slice(0, max).map((client) => ({
        user: (JSON.parse(entries[client]!) as { user: string }).user,
        client,
      })),
      truncated: clients.length > max,
    };
  }

  async channels(): Promise<string[]> {
    return this.guard(async () => {
      const channels: string[] = [];
      for await (const batch of this.commands.scanIterator({
        MATCH: META_PATTERN,
        COUNT: 1000,
      })) {
        for (const key of batch) channels.push(key.slice(6, -3));
      }
      return channels;
    });
  }

  /**
   * Compares each channel's stored top with what the node delivered and
   * repairs behind ones: the last message of a quiet channel, lost by
   * pub/sub, is found within one interval.
   */
  private async checkPositions(): Promise<void> {
    if (!this.commands.isReady) return;
    for (const [channel, state] of this.states) {
      if (state.epoch === "" || state.repairing) continue;
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
        return;
      }
    }
  }

  /** The epoch clients see for an epoch stored in Redis. */
  private epochOf(stored: string): string {
    if (this.generation === "") {
      throw new RequestError(ErrorCode.Unavailable, "redis unavailable");
    }
    return `${this.generation}.${stored}`;
  }

  /** The stored part of a client's epoch; "" if of another generation. */
  private storedEpoch(epoch: string): string {
    const dot = epoch.indexOf(".");
    return epoch.slice(0, dot) === this.generation ? epoch.slice(dot + 1) : "";
  }

  /**
   * Reads the server's run and replication ids and the shard generation
   * they belong to. A new generation makes every channel's position
   * unverifiable: each is repaired, which tells its subscribers.
   */
  private async checkGeneration(): Promise<void> {
    const server = await this.commands.info("server");
    const replication = await this.commands.info("replication");
    const run = /run_id:(\w+)/.exec(server)?.[1] ?? "";
    const repl = /master_replid:(\w+)/.exec(replication)?.[1] ?? "";
    const generation = String(
      await generationScript.run(this.commands, [SHARD_KEY], [run, repl]),
    );
    if (generation === this.generation) return;
    const previous = this.generation;
    this.generation = generation;
    this.checkHealth();
    if (previous === "") return;
    // Redis may have lost the index of this node's presence channels too.
    this.presenceChannels.clear();
    this.options.logger.warn(
      { previous, generation },
      "redis restarted or failed over: new generation",
    );
    for (const [channel, state] of this.states) {
      if (state.epoch !== "") void this.repair(channel, state);
    }
  }

  /** Refreshes this incarnation's liveness key. */
  private async beAlive(): Promise<void> {
    const { alive } = nodeKeys(this.incarnation);
    try {
      await this.commands
        .multi()
        .sAdd(NODES_KEY, this.incarnation)
        .set(alive, "1", { PX: this.options.presenceTtl })
        .exec();
    } catch (error) {
      this.options.logger.warn(
        { err: String(error) },
        "liveness refresh failed",
      );
    }
  }

  /**
   * Removes the presence of incarnations whose liveness key ran out,
   * channel by channel, each in one step, so every leave is sent once
   * whichever node gets there first.
   */
  private async reap(): Promise<void> {
    try {
      for (const incarnation of await this.commands.sMembers(NODES_KEY)) {
        if (incarnation === this.incarnation) continue;
        const node = nodeKeys(incarnation);
        if ((await this.commands.exists(node.alive)) === 1) continue;
        for (const channel of await this.commands.sMembers(node.channels)) {
          const keys = channelKeys(channel);
          await presenceReapScript.run(
            this.commands,
            [keys.presence, keys.users, keys.lingering],
            [incarnation, keys.topic],
          );
        }
        await this.commands.del(node.channels);
        await this.commands.sRem(NODES_KEY, incarnation);
        this.options.logger.info({ incarnation }, "reaped a dead node");
      }
    } catch (error) {
      this.options.logger.warn({ err: String(error) }, "reap failed");
    }
  }

  /** Runs a script; a Redis failure becomes `unavailable`. */
  private run(
    script: RedisScript,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    return this.guard(() => script.run(this.commands, keys, args));
  }

  private async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.options.logger.debug({ err: String(error) }, "redis call failed");
      throw new RequestError(ErrorCode.Unavailable, "redis unavailable");
    }
  }

  /**
   * Subscribes to a channel's topic and, once Redis confirmed it, reads
   * the position the node starts from; messages heard meanwhile count.
   */
  private async listen(channel: string, state: ChannelState): Promise<void> {
    await this.subscriber.subscribe(
      channelKeys(channel).topic,
      (payload: string) => this.hear(channel, state, payload),
    );
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
    if (this.generation === "") return;
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
      epoch: this.epochOf(decoded.epoch),
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
