import type {
  HistoryResult,
  Json,
  MessagePush,
  Position,
  PresenceMember,
  PresenceResult,
  Publisher,
  SubscribeResult,
} from "@switchboard/protocol";

import { Backoff } from "./backoff.js";
import {
  ChannelStream,
  type Discontinuity,
  type Recovery,
  type StreamStep,
} from "./channel-stream.js";
import type { Connection, Push } from "./connection.js";
import { Emitter } from "./emitter.js";
import {
  ConnectionLostError,
  ServerError,
  UnsubscribedError,
  type SwitchboardClientError,
} from "./errors.js";
import type { Log } from "./log.js";
import { MemberList } from "./members.js";

/** Temporary history failures a gap recovery retries before it gives up. */
const MAX_FETCH_RETRIES = 3;

/** A publication delivered to a subscription. */
export interface Message {
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  readonly data: Json;
  /** Who published it, as the server saw it. */
  readonly publisher?: Publisher;
}

/** A user's first connection joined, or its last one left, the channel. */
export interface PresenceChange {
  readonly user: string;
  readonly client: string;
}

/** The subscription is live at this position. */
export interface Subscribed {
  readonly epoch: string;
  readonly offset: number;
  /** Whether what was missed was recovered; only on a resubscribe. */
  readonly recovered?: boolean;
  /** False for the first subscribe, true for every later one. */
  readonly resubscribed: boolean;
}

/** The subscription ended, or (with `resubscribe`) is being renewed. */
export interface Unsubscribed {
  /** The server's code, or `client` / `closed` when it ended here. */
  readonly code: string;
  readonly reason: string;
  /** True when the SDK resubscribes (with `since`) by itself. */
  readonly resubscribe: boolean;
}

/** Events of a subscription, each with its payload. */
export interface SubscriptionEvents {
  /** The subscription went live, after every (re)subscribe. */
  subscribed: Subscribed;
  /** A message, in order, once, without gaps or with a discontinuity. */
  message: Message;
  /** A user joined (with the `presence` option). */
  join: PresenceChange;
  /** A user left (with the `presence` option). */
  leave: PresenceChange;
  /** The member list was replaced by a snapshot (with `presence`). */
  members: readonly PresenceMember[];
  /** Messages may have been lost: refetch the app's state. */
  discontinuity: Discontinuity;
  /** Missed messages were recovered and delivered. */
  recovered: Recovery;
  /** The server or the app ended the subscription. */
  unsubscribed: Unsubscribed;
  /** Subscribing failed for good; `unsubscribed` follows. */
  error: SwitchboardClientError;
}

/** Lifecycle of a subscription; `unsubscribed` is final. */
export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed";

/** Options of `client.subscribe`. */
export interface SubscribeOptions {
  /**
   * Receive `join`/`leave` and keep `subscription.members`.
   * @default false
   */
  presence?: boolean;
  /**
   * Recover from here: typically the position of a `history` reply the app
   * rendered, so nothing falls between.
   * @default undefined (start at the channel's current position)
   */
  since?: Position;
}

/** Options of a `history` call. */
export interface HistoryOptions {
  /** Messages after this position. */
  since?: Position;
  /** How many messages; 0 reads the position only. @default 0 */
  limit?: number;
  /** Newest first. @default false */
  reverse?: boolean;
}

/**
 * What a subscription needs from its client.
 *
 * @internal
 */
export interface SubscriptionHost {
  readonly log: Log;
  /** The server's `historyMaxLimit`, for gap recovery. */
  historyLimit(): number;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** Forget the subscription: it ended. */
  detach(subscription: Subscription): void;
  history(channel: string, options: HistoryOptions): Promise<HistoryResult>;
  presence(channel: string): Promise<PresenceResult>;
}

/**
 * One channel subscription. The client keeps it across reconnects,
 * resubscribing with `since` so the app gets every message once, in order,
 * or a `discontinuity` event when that cannot be done.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  private current: SubscriptionState = "subscribing";
  private readonly stream: ChannelStream;
  private readonly memberList = new MemberList();
  private readonly retry: Backoff;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Temporary failures of the current gap's history read, in a row. */
  private fetchRetries = 0;
  private connection: Connection | undefined;
  private everSubscribed = false;
  private readonly readyWaiters = new Set<{
    resolve: () => void;
    reject: (error: Error) => void;
  }>();
  private endError: SwitchboardClientError | undefined;

  /** @internal Use `client.subscribe`. */
  constructor(
    /** The channel name. */
    readonly channel: string,
    private readonly options: SubscribeOptions,
    private readonly host: SubscriptionHost,
  ) {
    super();
    this.stream = new ChannelStream(options.since);
    this.retry = new Backoff(host.minDelayMs, host.maxDelayMs);
  }

  /** Where the subscription is in its lifecycle. */
  get state(): SubscriptionState {
    return this.current;
  }

  /** Position of the last delivered message: resubscribes recover from it. */
  get position(): Position | undefined {
    return this.stream.position;
  }

  /** The channel's members (with the `presence` option), kept current. */
  get members(): readonly PresenceMember[] {
    return this.memberList.members;
  }

  /**
   * Resolves once the subscription is live; rejects if it ends first, e.g.
   * because the server refused it.
   */
  ready(): Promise<void> {
    if (this.current === "subscribed") return Promise.resolve();
    if (this.current === "unsubscribed") {
      return Promise.reject(this.endError ?? this.unsubscribedError());
    }
    return new Promise((resolve, reject) => {
      this.readyWaiters.add({ resolve, reject });
    });
  }

  /** Who is in the channel now, across all nodes. */
  presence(): Promise<PresenceResult> {
    return this.host.presence(this.channel);
  }

  /** Stored messages of the channel. */
  history(options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.host.history(this.channel, options);
  }

  /**
   * Leaves the channel. No event of it is emitted afterwards, but the
   * final `unsubscribed` with code `client`.
   */
  async unsubscribe(): Promise<void> {
    if (this.current === "unsubscribed") return;
    const connection = this.connection;
    this.end({ code: "client", reason: "unsubscribed", resubscribe: false });

    if (connection === undefined || !connection.usable) return;
    await new Promise<void>((resolve) => {
      connection.request<"unsubscribe">(
        { type: "unsubscribe", channel: this.channel },
        (outcome) => {
          if (!outcome.ok) {
            this.host.log("unsubscribe failed", {
              channel: this.channel,
              error: outcome.error.message,
            });
          }
          resolve();
        },
      );
    });
  }

  /** @internal The client connected: subscribe on `connection`. */
  attach(connection: Connection): void {
    if (this.current === "unsubscribed") return;
    this.connection = connection;
    this.retry.reset();
    this.subscribe();
  }

  /** @internal The connection is gone; resubscribe on the next one. */
  detachConnection(): void {
    clearTimeout(this.retryTimer);
    this.connection = undefined;
    this.stream.reset();
    if (this.current === "subscribed") this.current = "subscribing";
  }

  /** @internal A push for this channel arrived. */
  receive(push: Push): void {
    if (this.current !== "subscribed") {
      this.host.log("dropped a push before subscribe", {
        channel: this.channel,
        type: push.type,
      });
      return;
    }

    switch (push.type) {
      case "message":
        this.run(this.stream.receive(push));
        return;
      case "join":
        if (this.memberList.join(push.user, push.client)) {
          this.emit("join", { user: push.user, client: push.client });
        }
        return;
      case "leave":
        if (this.memberList.leave(push.user)) {
          this.emit("leave", { user: push.user, client: push.client });
        }
        return;
      case "unsubscribed":
        this.serverUnsubscribed(push);
        return;
      default:
        return;
    }
  }

  /** @internal The client closed: end with `error` as the reason. */
  close(error: SwitchboardClientError): void {
    this.endError = error;
    this.end({ code: "closed", reason: error.message, resubscribe: false });
  }

  private subscribe(): void {
    const connection = this.connection;
    if (connection === undefined || this.current === "unsubscribed") return;

    const since = this.stream.position;
    connection.request<"subscribe">(
      {
        type: "subscribe",
        channel: this.channel,
        ...(since !== undefined && { since }),
        ...(this.options.presence === true && { presence: true }),
      },
      (outcome) => {
        if (connection !== this.connection) return;
        if (outcome.ok) this.subscribed(outcome.result, since);
        else this.subscribeFailed(outcome.error);
      },
    );
  }

  private subscribed(result: SubscribeResult, since?: Position): void {
    const resubscribed = this.everSubscribed;
    this.everSubscribed = true;
    this.current = "subscribed";
    this.retry.reset();

    if (this.options.presence === true && result.presence !== undefined) {
      this.memberList.replace(result.presence.members);
      this.emit("members", this.memberList.members);
    }

    const steps = this.stream.subscribed(result, since);
    this.emit("subscribed", {
      epoch: result.epoch,
      offset: result.offset,
      ...(since !== undefined && { recovered: result.recovered === true }),
      resubscribed,
    });
    for (const waiter of this.readyWaiters) waiter.resolve();
    this.readyWaiters.clear();
    this.run(steps);
  }

  private subscribeFailed(error: SwitchboardClientError): void {
    if (error instanceof ConnectionLostError) return;

    if (error instanceof ServerError && error.temporary) {
      const delay = Math.max(error.retryAfter ?? 0, this.retry.next());
      this.host.log("subscribe failed, retrying", {
        channel: this.channel,
        code: error.serverCode,
        delay,
      });
      this.retryTimer = setTimeout(() => this.subscribe(), delay);
      return;
    }

    this.endError = error;
    this.emit("error", error);
    const code = error instanceof ServerError ? error.serverCode : error.code;
    this.end({ code, reason: error.message, resubscribe: false });
  }

  private serverUnsubscribed(push: Unsubscribed): void {
    const info = {
      code: push.code,
      reason: push.reason,
      resubscribe: push.resubscribe === true,
    };
    if (!info.resubscribe) {
      this.end(info);
      return;
    }

    this.emit("unsubscribed", info);
    this.stream.reset();
    this.current = "subscribing";
    this.subscribe();
  }

  /** Performs the stream's steps, in order. */
  private run(steps: readonly StreamStep[]): void {
    for (const step of steps) {
      // A listener may have left the channel in the middle of the run.
      if (this.current === "unsubscribed") return;
      switch (step.type) {
        case "deliver":
          this.emit("message", messageOf(step.message));
          break;
        case "discontinuity":
          this.emit("discontinuity", step.info);
          break;
        case "recovered":
          this.emit("recovered", step.info);
          break;
        case "fetch":
          this.fetch(step.since, step.generation);
          break;
      }
    }
  }

  /** Asks `history` for the messages of a gap. */
  private fetch(since: Position, generation: number): void {
    const connection = this.connection;
    if (connection === undefined) return;

    const limit = this.host.historyLimit();
    this.host.log("gap, recovering from history", {
      channel: this.channel,
      epoch: since.epoch,
      offset: since.offset,
    });
    connection.request<"history">(
      { type: "history", channel: this.channel, since, limit },
      (outcome) => {
        if (connection !== this.connection) return;
        if (outcome.ok) {
          this.fetchRetries = 0;
          this.run(this.stream.historyArrived(generation, outcome.result));
          return;
        }
        const { error } = outcome;
        if (error instanceof ConnectionLostError) return;
        // A node briefly without Redis answers unavailable: worth a few
        // tries before the gap is given up as a discontinuity.
        if (
          error instanceof ServerError &&
          error.temporary &&
          this.fetchRetries < MAX_FETCH_RETRIES
        ) {
          this.fetchRetries += 1;
          const delay = Math.max(error.retryAfter ?? 0, this.retry.next());
          this.retryTimer = setTimeout(() => {
            if (connection === this.connection) this.fetch(since, generation);
          }, delay);
          return;
        }
        this.fetchRetries = 0;
        this.run(this.stream.historyFailed(generation));
      },
    );
  }

  private unsubscribedError(): UnsubscribedError {
    return new UnsubscribedError(`left ${this.channel} before it went live`);
  }

  /** Ends the subscription for good and tells the app. */
  private end(info: Unsubscribed): void {
    if (this.current === "unsubscribed") return;
    this.current = "unsubscribed";
    clearTimeout(this.retryTimer);
    this.connection = undefined;
    this.stream.reset();
    this.host.detach(this);

    const error = this.endError ?? this.unsubscribedError();
    for (const waiter of this.readyWaiters) waiter.reject(error);
    this.readyWaiters.clear();
    this.emit("unsubscribed", info);
  }
}

/** The push without its `type`, as apps see it. */
function messageOf(push: MessagePush): Message {
  const { channel, epoch, offset, data, publisher } = push;
  return publisher === undefined
    ? { channel, epoch, offset, data }
    : { channel, epoch, offset, data, publisher };
}
