import {
  channelKeys,
  namespaceOf,
  type Json,
  type PublishResult,
} from "@switchboard/protocol";
import {
  DEFAULT_TIMEOUT_MS,
  checkChannel,
  checkKey,
  type BroadcastResult,
} from "./api-client.js";
import { InvalidArgumentError, NetworkError, TimeoutError } from "./errors.js";
import { jsonText } from "./json-data.js";
import { openFleet, type Fleet, type RedisClient } from "./redis-fleet.js";

export type { RedisClient } from "./redis-fleet.js";

/** Messages kept per channel: a node's default `historySize`. */
export const DEFAULT_HISTORY_SIZE = 100;
/** Messages kept after a channel's last publish, in ms (5 min). */
export const DEFAULT_HISTORY_TTL_MS = 300_000;
/** A channel's position outlives its last publish this long (7 days). */
export const DEFAULT_HISTORY_META_TTL_MS = 7 * 24 * 3_600_000;
/** Idempotency keys are remembered this long, in ms (5 min). */
export const DEFAULT_IDEMPOTENCY_WINDOW_MS = 300_000;
/** Largest serialized `data`, in bytes (64 KiB). */
export const DEFAULT_MAX_MESSAGE_SIZE = 65_536;

/** History settings of one namespace, as the fleet's `namespaces` has. */
export interface RedisNamespaceOptions {
  historySize?: number;
  /** In ms. */
  historyTtl?: number;
  /** In ms. */
  idempotencyWindow?: number;
}

/**
 * Options of `RedisPublisher`. History and idempotency settings must be the
 * ones the fleet's nodes run with, or channels published here keep a
 * different history than those published through a node.
 */
export interface RedisPublisherOptions {
  /**
   * The fleet's `--redis-url`, as is: one Redis server, one node of a
   * Redis Cluster (told apart on first use, as nodes do), or named shards
   * `a=redis://...,b=redis://...`. @default "redis://127.0.0.1:6379"
   */
  url?: string;
  /**
   * A node-redis client of the fleet's one standalone Redis server, used
   * instead of `url`; `close()` leaves it open.
   */
  client?: RedisClient;
  /** @default 100 */
  historySize?: number;
  /** In ms. @default 300000 */
  historyTtl?: number;
  /** In ms. @default 604800000 */
  historyMetaTtl?: number;
  /** In ms. @default 300000 */
  idempotencyWindow?: number;
  /** Largest serialized `data`, in bytes. @default 65536 */
  maxMessageSize?: number;
  /** Per-namespace history settings, keyed by namespace name. */
  namespaces?: Record<string, RedisNamespaceOptions>;
  /**
   * Deadline of each Redis command and of connecting, in ms: a Redis that
   * stops answering gives a `TimeoutError`. @default 10000
   */
  timeoutMs?: number;
}

/**
 * Publishes straight into the Redis of a fleet that runs the redis
 * engine, with the same script, keys, shard and epoch as a node, so
 * subscribers on every node get the message as if a node had published
 * it. Works on one Redis server, named shards and a Redis Cluster. Needs
 * TCP connections, so it runs on Node, not on edge runtimes.
 */
export class RedisPublisher {
  private readonly fleet: Fleet;
  private readonly options: Required<Omit<RedisPublisherOptions, "client">>;

  constructor(options: RedisPublisherOptions = {}) {
    this.options = {
      url: options.url ?? "redis://127.0.0.1:6379",
      historySize: count(
        options.historySize,
        "historySize",
        DEFAULT_HISTORY_SIZE,
      ),
      historyTtl: count(
        options.historyTtl,
        "historyTtl",
        DEFAULT_HISTORY_TTL_MS,
      ),
      historyMetaTtl: count(
        options.historyMetaTtl,
        "historyMetaTtl",
        DEFAULT_HISTORY_META_TTL_MS,
      ),
      idempotencyWindow: count(
        options.idempotencyWindow,
        "idempotencyWindow",
        DEFAULT_IDEMPOTENCY_WINDOW_MS,
      ),
      maxMessageSize: count(
        options.maxMessageSize,
        "maxMessageSize",
        DEFAULT_MAX_MESSAGE_SIZE,
      ),
      namespaces: options.namespaces ?? {},
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    };
    const { timeoutMs } = this.options;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new InvalidArgumentError("timeoutMs must be a number above 0");
    }
    for (const [name, namespace] of Object.entries(this.options.namespaces)) {
      count(namespace.historySize, `namespaces.${name}.historySize`, 0);
      count(namespace.historyTtl, `namespaces.${name}.historyTtl`, 0);
      count(
        namespace.idempotencyWindow,
        `namespaces.${name}.idempotencyWindow`,
        0,
      );
    }
    this.fleet = openFleet(this.options.url, options.client);
  }

  /** Publishes `data` on `channel`; resolves with its position. */
  async publish(
    channel: string,
    data: Json,
    options: { key?: string } = {},
  ): Promise<PublishResult> {
    checkChannel(channel);
    const key = checkKey(options.key);
    const serialized = serialize(data, this.options.maxMessageSize);
    const settings = this.settings(channel);
    const keys = channelKeys(channel);
    let reply: [string, number, number];
    let generation: string;
    try {
      const placement = await this.within("connect", this.fleet.place(channel));
      // Read first, so a shard set other than the nodes' is refused before
      // anything is written; read after, in case the server changed since.
      await this.within("generation", placement.generation());
      reply = (await this.within(
        "publish",
        placement.publish(
          [keys.meta, keys.stream, keys.idempotency(key ?? "")],
          [
            serialized,
            "",
            String(settings.historySize),
            String(settings.historyTtl),
            String(this.options.historyMetaTtl),
            String(key ? settings.idempotencyWindow : 0),
            newEpoch(),
            keys.topic,
          ],
        ),
      )) as [string, number, number];
      generation = await this.within("generation", placement.generation());
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      if (error instanceof TimeoutError) throw error;
      throw new NetworkError(`redis: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return {
      epoch: `${generation}.${reply[0]}`,
      offset: reply[1],
      ...(reply[2] === 1 ? { duplicate: true } : {}),
    };
  }

  /** Publishes the same `data` on each of `channels`. */
  async broadcast(
    channels: readonly string[],
    data: Json,
    options: { key?: string } = {},
  ): Promise<BroadcastResult[]> {
    if (!Array.isArray(channels) || channels.length === 0) {
      throw new InvalidArgumentError("channels must be a non-empty array");
    }
    return Promise.all(
      channels.map(async (channel) => ({
        channel,
        ...(await this.publish(channel, data, options)),
      })),
    );
  }

  /** Closes the Redis connections it opened; a given client is left open. */
  async close(): Promise<void> {
    await this.fleet.close();
  }

  /**
   * Waits for `work` up to `timeoutMs`. A command timed out may still run
   * later (a paused Redis answers when it resumes).
   */
  private async within<T>(what: string, work: Promise<T>): Promise<T> {
    const ms = this.options.timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TimeoutError(`redis: ${what}: no answer in ${ms} ms`)),
        ms,
      );
    });
    try {
      return await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private settings(channel: string): Required<RedisNamespaceOptions> {
    const namespace = this.options.namespaces[namespaceOf(channel)] ?? {};
    return {
      historySize: namespace.historySize ?? this.options.historySize,
      historyTtl: namespace.historyTtl ?? this.options.historyTtl,
      idempotencyWindow:
        namespace.idempotencyWindow ?? this.options.idempotencyWindow,
    };
  }
}

function serialize(data: Json, limit: number): string {
  const text = jsonText(data);
  if (new TextEncoder().encode(text).length > limit) {
    throw new InvalidArgumentError(`data over ${limit} bytes`);
  }
  return text;
}

function count(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be an integer of 0 or more`);
  }
  return value;
}

/** A random channel epoch, as the redis engine makes them. */
function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}
