import { randomBytes } from "node:crypto";

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

/** How often idle channels and expired keys are swept away, ms. */
const SWEEP_INTERVAL_MS = 5_000;

/**
 * Estimated bytes an entry or a remembered key costs beyond its strings:
 * the objects, map slots and references that hold it.
 */
const ENTRY_OVERHEAD = 160;

/** Idempotency keys may take at most this share of the budget. */
const KEY_SHARE = 0.25;

/** Options of the memory engine. */
export interface MemoryEngineOptions {
  /**
   * Estimated bytes of history and idempotency keys kept in all; the
   * least recently published history and the oldest keys go first.
   */
  historyBudget: number;
}

/** What storing a publication costs, estimated. */
function entryCost(publication: Publication): number {
  return publication.data.length + ENTRY_OVERHEAD;
}

interface Lingering {
  readonly entry: PresenceEntry;
  readonly timer: NodeJS.Timeout;
}

/** Channel names hold no newline, so this key is unambiguous. */
function lingerKey(entry: PresenceEntry): string {
  return `${entry.channel}\n${entry.session}`;
}

interface RememberedKey {
  readonly key: string;
  readonly stream: Stream;
  readonly outcome: PublishOutcome;
  readonly expiresAt: number;
  readonly cost: number;
}

/** One channel's position, history ring and idempotency keys. */
class Stream {
  readonly epoch = randomBytes(6).toString("base64url");
  top = 0;
  entries: Publication[] = [];
  bytes = 0;
  /** When the history expires: the last publish plus its TTL. */
  expiresAt = 0;
  readonly keys = new Map<string, RememberedKey>();

  /** Drops the history once its TTL has passed. */
  expire(now: number): number {
    if (now < this.expiresAt || this.entries.length === 0) return 0;
    return this.trim(this.entries.length);
  }

  /** Drops the `count` oldest entries and returns the bytes freed. */
  trim(count: number): number {
    let freed = 0;
    for (const entry of this.entries.splice(0, count)) {
      freed += entryCost(entry);
    }
    this.bytes -= freed;
    return freed;
  }

  get oldest(): number {
    return this.entries[0]?.offset ?? this.top + 1;
  }
}

/**
 * The engine of a single process: history in per-channel rings, fan-out by
 * a direct call. A channel is freed once nobody listens, its history has
 * expired and it remembers no idempotency key.
 */
export class MemoryEngine implements Engine {
  /** Ordered by last publish, so the budget evicts the stalest first. */
  private readonly streams = new Map<string, Stream>();
  private readonly interest = new Map<string, number>();
  private readonly members = new Map<string, Map<string, PresenceEntry>>();
  private readonly users = new Map<string, Map<string, number>>();
  /** Entries of vanished connections, waiting for their session. */
  private readonly lingering = new Map<string, Lingering>();
  private handlers: EngineHandlers | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private historyBytes = 0;
  /** Every remembered key, oldest first, for the key share of the budget. */
  private readonly keyOrder = new Set<RememberedKey>();
  private keyBytes = 0;

  constructor(private readonly options: MemoryEngineOptions) {}

  private readonly healthy: EngineHealth = { ready: true, since: Date.now() };

  health(): EngineHealth {
    return this.healthy;
  }

  async start(handlers: EngineHandlers): Promise<void> {
    this.handlers = handlers;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  /** One process: there is no other node to reach. */
  async control(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const { timer } of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
    this.handlers = undefined;
  }

  async publish(
    channel: string,
    data: string,
    options: PublishOptions,
  ): Promise<PublishOutcome> {
    const now = Date.now();
    const stream = this.stream(channel, now);
    const remembered = options.key && stream.keys.get(options.key);
    if (remembered && remembered.expiresAt > now) {
      return { ...remembered.outcome, duplicate: true };
    }

    stream.top += 1;
    const publication: Publication = {
      channel,
      epoch: stream.epoch,
      offset: stream.top,
      data,
      publisher: options.publisher,
    };
    this.store(stream, publication, options, now);
    this.streams.delete(channel);
    this.streams.set(channel, stream);

    const outcome = {
      epoch: stream.epoch,
      offset: stream.top,
      duplicate: false,
    };
    if (options.key) {
      this.remember(
        channel,
        stream,
        options.key,
        outcome,
        now + options.idempotencyWindow,
      );
    }
    this.handlers?.publication(publication);
    return outcome;
  }

  async read(channel: string, options: ReadOptions): Promise<ReadOutcome> {
    const stream = this.stream(channel, Date.now());
    const position = {
      epoch: stream.epoch,
      offset: stream.top,
      oldest: stream.oldest,
    };
    if (options.limit === 0) return { ...position, publications: [] };

    const { since } = options;
    const after = since?.epoch === stream.epoch ? since.offset : 0;
    const first = Math.max(0, after - stream.oldest + 1);
    const selection = stream.entries.slice(first);
    const publications = options.reverse
      ? selection.slice(-options.limit).reverse()
      : selection.slice(0, options.limit);
    return { ...position, publications };
  }

  async subscribe(channel: string): Promise<void> {
    this.interest.set(channel, (this.interest.get(channel) ?? 0) + 1);
  }

  unsubscribe(channel: string): void {
    const count = (this.interest.get(channel) ?? 0) - 1;
    if (count > 0) this.interest.set(channel, count);
    else this.interest.delete(channel);
  }

  async addPresence(entry: PresenceEntry): Promise<void> {
    const { channel, client, user } = entry;
    let members = this.members.get(channel);
    let users = this.users.get(channel);
    if (!members || !users) {
      members = new Map();
      users = new Map();
      this.members.set(channel, members);
      this.users.set(channel, users);
    }
    if (members.has(client)) return;

    const key = lingerKey(entry);
    const returning = this.lingering.get(key);
    if (returning) {
      clearTimeout(returning.timer);
      this.lingering.delete(key);
      if (returning.entry.user === user) {
        members.delete(returning.entry.client);
        members.set(client, entry);
        return;
      }
      this.drop(returning.entry);
    }

    members.set(client, entry);
    const count = (users.get(user) ?? 0) + 1;
    users.set(user, count);
    if (count === 1) {
      this.handlers?.presence({ type: "join", ...entry, users: users.size });
    }
  }

  async removePresence(entry: PresenceEntry, linger: number): Promise<void> {
    if (linger <= 0) {
      this.drop(entry);
      return;
    }
    const key = lingerKey(entry);
    const timer = setTimeout(() => {
      this.lingering.delete(key);
      this.drop(entry);
    }, linger);
    timer.unref();
    this.lingering.set(key, { entry, timer });
  }

  private drop(entry: PresenceEntry): void {
    const { channel, client, user } = entry;
    const members = this.members.get(channel);
    const users = this.users.get(channel);
    if (!members?.delete(client) || !users) return;

    const count = (users.get(user) ?? 1) - 1;
    if (count > 0) {
      users.set(user, count);
      return;
    }
    users.delete(user);
    if (members.size === 0) {
      this.members.delete(channel);
      this.users.delete(channel);
    }
    this.handlers?.presence({ type: "leave", ...entry, users: users.size });
  }

  async presence(channel: string, max: number): Promise<PresenceList> {
    const members = [...(this.members.get(channel)?.values() ?? [])];
    return {
      members: members
        .slice(0, max)
        .map(({ user, client }) => ({ user, client })),
      truncated: members.length > max,
    };
  }

  async channels(): Promise<string[]> {
    this.sweep();
    return [...new Set([...this.streams.keys(), ...this.interest.keys()])];
  }

  private stream(channel: string, now: number): Stream {
    let stream = this.streams.get(channel);
    if (!stream) {
      stream = new Stream();
      this.streams.set(channel, stream);
    }
    this.historyBytes -= stream.expire(now);
    return stream;
  }

  private store(
    stream: Stream,
    publication: Publication,
    options: PublishOptions,
    now: number,
  ): void {
    if (options.historySize === 0 || options.historyTtl === 0) {
      this.historyBytes -= stream.trim(stream.entries.length);
      return;
    }
    stream.entries.push(publication);
    stream.bytes += entryCost(publication);
    this.historyBytes += entryCost(publication);
    stream.expiresAt = now + options.historyTtl;

    const excess = stream.entries.length - options.historySize;
    if (excess > 0) this.historyBytes -= stream.trim(excess);
    if (this.historyBytes + this.keyBytes > this.options.historyBudget) {
      this.evict();
    }
  }

  /** Remembers a key's outcome, dropping the oldest keys over their share. */
  private remember(
    channel: string,
    stream: Stream,
    key: string,
    outcome: PublishOutcome,
    expiresAt: number,
  ): void {
    const stale = stream.keys.get(key);
    if (stale) this.forget(stale);
    const remembered: RememberedKey = {
      key,
      stream,
      outcome,
      expiresAt,
      cost: key.length + channel.length + ENTRY_OVERHEAD,
    };
    stream.keys.set(key, remembered);
    this.keyOrder.add(remembered);
    this.keyBytes += remembered.cost;
    const share = this.options.historyBudget * KEY_SHARE;
    for (const oldest of this.keyOrder) {
      if (this.keyBytes <= share) break;
      this.forget(oldest);
    }
  }

  private forget(remembered: RememberedKey): void {
    remembered.stream.keys.delete(remembered.key);
    this.keyOrder.delete(remembered);
    this.keyBytes -= remembered.cost;
  }

  /** Trims the least recently published channels until under budget. */
  private evict(): void {
    const room = this.options.historyBudget - this.keyBytes;
    for (const stream of this.streams.values()) {
      if (this.historyBytes <= room) return;
      while (stream.entries.length > 0) {
        this.historyBytes -= stream.trim(1);
        if (this.historyBytes <= room) return;
      }
    }
  }

  /** Frees channels nobody listens to, with no history and no keys. */
  private sweep(): void {
    const now = Date.now();
    for (const [channel, stream] of this.streams) {
      this.historyBytes -= stream.expire(now);
      for (const remembered of stream.keys.values()) {
        if (remembered.expiresAt <= now) this.forget(remembered);
      }
      const idle =
        stream.entries.length === 0 &&
        stream.keys.size === 0 &&
        !this.interest.has(channel);
      if (idle) this.streams.delete(channel);
    }
  }
}
