import {
  PUBLISH_SCRIPT,
  SHARD_KEY,
  channelKeys,
  isValidChannel,
  isValidIdempotencyKey,
  namespaceOf,
  type Json,
  type PublishResult,
} from "@switchboard/protocol";
import { createClient } from "redis";

import { DEFAULT_TIMEOUT_MS, type BroadcastResult } from "./api-client.js";
import { InvalidArgumentError, NetworkError, TimeoutError } from "./errors.js";
import { jsonText } from "./json-data.js";

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

/** Connection attempts per publish before it fails. */
const RECONNECT_TRIES = 3;
/** Pause between connection attempts, in ms. */
const RECONNECT_DELAY_MS = 100;

/** History settings of one namespace, as the fleet's `namespaces` has. */
export interface RedisNamespaceOptions {
  historySize?: number;
  /** In ms. */
  historyTtl?: number;
  /** In ms. */
  idempotencyWindow?: number;
}

/** A connected node-redis client. */
export type RedisClient = ReturnType<typeof createClient>;

/**
 * Options of `RedisPublisher`. History and idempotency settings must be the
 * ones the fleet's nodes run with, or channels published here keep a
 * different history than those published through a node.
 */
export interface RedisPublisherOptions {
  /** The fleet's `--redis-url`. @default "redis://127.0.0.1:6379" */
  url?: string;
  /** A node-redis client to use instead of `url`; `close()` leaves it. */
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
 * engine, with the same script and keys as a node, so subscribers on every
 * node get the message as if a node had published it. Needs a TCP
 * connection, so it runs on Node, not on edge runtimes.
 */
export class RedisPublisher {
  private readonly client: RedisClient;
  private readonly owned: boolean;
  private readonly options: Required<Omit<RedisPublisherOptions, "client">>;
  private connecting: Promise<unknown> | undefined;
  private sha: string | undefined;

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
    this.owned = options.client === undefined;
    this.client =
      options.client ??
      createClient({
        url: this.options.url,
        disableOfflineQueue: true,
        // A publish fails fast instead of waiting through endless retries;
        // the next publish connects again.
        socket: {
          reconnectStrategy: (retries, cause) =>
            retries >= RECONNECT_TRIES ? cause : RECONNECT_DELAY_MS,
        },
      });
    // node-redis emits errors while it reconnects; calls report them.
    if (this.owned) this.client.on("error", () => {});
  }

  /** Publishes `data` on `channel`; resolves with its position. */
  async publish(
    channel: string,
    data: Json,
    options: { key?: string } = {},
  ): Promise<PublishResult> {
    if (!isValidChannel(channel)) {
      throw new InvalidArgumentError(
        `channel must be 1-200 characters of A-Za-z0-9_-:.@=/, got ${JSON.stringify(channel)}`,
      );
    }
    const { key } = options;
    if (key !== undefined && !isValidIdempotencyKey(key)) {
      throw new InvalidArgumentError("key must be 1-64 of A-Za-z0-9_-");
    }
    const serialized = serialize(data, this.options.maxMessageSize);
    const settings = this.settings(channel);
    const keys = channelKeys(channel);
    const reply = (await this.run(
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
    )) as [string, number, number];
    const generation = await this.command(() =>
      this.client.hGet(SHARD_KEY, "gen"),
    );
    return {
      epoch: generation ? `${generation}.${reply[0]}` : reply[0],
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

  /** Closes the Redis connection it opened; a given client is left open. */
  async close(): Promise<void> {
    if (this.owned && this.client.isOpen) await this.client.close();
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

  private async run(keys: string[], args: string[]): Promise<unknown> {
    const options = { keys, arguments: args };
    this.sha ??= await sha1(PUBLISH_SCRIPT);
    const sha = this.sha;
    return this.command(async () => {
      try {
        return await this.client.evalSha(sha, options);
      } catch (error) {
        if (!String((error as Error).message).startsWith("NOSCRIPT")) {
          throw error;
        }
        return this.client.eval(PUBLISH_SCRIPT, options);
      }
    });
  }

  private async command<T>(call: () => Promise<T>): Promise<T> {
    try {
      if (!this.client.isOpen) {
        this.connecting ??= this.client.connect().finally(() => {
          this.connecting = undefined;
        });
        await this.within("connect", this.connecting);
      }
      return await this.within("command", call());
    } catch (error) {
      if (error instanceof TimeoutError) throw error;
      throw new NetworkError(`redis: ${(error as Error).message}`, {
        cause: error,
      });
    }
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

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(text),
  );
  return [...new Uint8Array(digest)]
    .map((byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}
