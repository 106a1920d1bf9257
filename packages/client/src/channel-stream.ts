import type {
  HistoryResult,
  MessagePush,
  Position,
  SubscribeResult,
} from "@switchboard/protocol";

/** Fresh reads after a history reply older than the held messages. */
const MAX_STALE = 2;

/** Why the stream of a channel has a hole the app must refetch across. */
export type DiscontinuityReason =
  /** The server could not recover from `since` at (re)subscribe. */
  | "not_recovered"
  /** A message came with a new epoch: the old history is gone. */
  | "epoch_changed"
  /** A gap in live messages that history could not fill. */
  | "gap";

/**
 * Messages after `from` up to and including `to` may be lost: the app
 * should refetch its state. Delivery resumes with the message after `to`.
 */
export interface Discontinuity {
  readonly reason: DiscontinuityReason;
  /** The last position delivered before the hole, if any. */
  readonly from: Position | undefined;
  /** The position delivery resumes after. */
  readonly to: Position;
}

/** Missed messages were recovered and delivered, in order. */
export interface Recovery {
  /** `subscribe` for a resubscribe with `since`, `history` for a gap. */
  readonly source: "subscribe" | "history";
  /** The position recovery started after. */
  readonly from: Position;
  /** How many messages were recovered. */
  readonly count: number;
}

/** What the subscription must do next, in order. */
export type StreamStep =
  | { readonly type: "deliver"; readonly message: MessagePush }
  | { readonly type: "discontinuity"; readonly info: Discontinuity }
  | { readonly type: "recovered"; readonly info: Recovery }
  | {
      readonly type: "fetch";
      /** Ask `history` for the messages after this position. */
      readonly since: Position;
      /** Pass back to `historyArrived` so stale answers are ignored. */
      readonly generation: number;
    };

/**
 * The ordering rules of one channel, as DESIGN.md "Guarantees: Client"
 * states them, with no I/O. The stream holds the position P = (E, n) of the
 * last delivered message; for each incoming message of epoch E: offset <= n
 * is a duplicate and dropped, n + 1 is delivered, above n + 1 is a gap: live
 * messages are held while `history` fills it. A message of another epoch
 * raises a discontinuity and starts the new stream.
 *
 * Every method returns the steps the caller performs, in order.
 */
export class ChannelStream {
  private current: Position | undefined;
  private held: MessagePush[] = [];
  private fetching = false;
  private fetchFrom: Position | undefined;
  private fetched = 0;
  private staleReads = 0;
  private generation = 0;

  /** @param position where to start, e.g. the app's `since` */
  constructor(position?: Position) {
    this.current = position;
  }

  /** The position of the last delivered message, if any. */
  get position(): Position | undefined {
    return this.current;
  }

  /** Whether live messages are held while a gap is being recovered. */
  get recovering(): boolean {
    return this.fetching;
  }

  /**
   * Forgets held messages and any recovery in flight: the connection was
   * lost or the subscription restarts, and the next `subscribe` with
   * `since` recovers from the position instead.
   */
  reset(): void {
    this.held = [];
    this.fetching = false;
    this.fetchFrom = undefined;
    this.generation += 1;
  }

  /** Applies a `subscribe` reply to a request sent with `since`. */
  subscribed(
    result: SubscribeResult,
    since: Position | undefined,
  ): StreamStep[] {
    this.reset();
    const top: Position = { epoch: result.epoch, offset: result.offset };
    if (since === undefined) {
      this.current = top;
      return [];
    }

    const steps: StreamStep[] = [];
    if (result.recovered === true && result.epoch === since.epoch) {
      this.current = since;
      const count = this.deliverRun(result.publications ?? [], steps);
      if (this.reached(top)) {
        steps.push({
          type: "recovered",
          info: { source: "subscribe", from: since, count },
        });
        return steps;
      }
    }

    // Not recovered, or "recovered" publications that stop short of the
    // top: nothing at or below the top will come live, so it is a hole.
    steps.push(this.discontinuity("not_recovered", top));
    return steps;
  }

  /** Applies one live `message` push. */
  receive(message: MessagePush): StreamStep[] {
    const steps: StreamStep[] = [];
    this.receiveInto(message, steps);
    return steps;
  }

  /**
   * Applies the reply of the `history` request a `fetch` step asked for.
   * While a page makes progress and the stream's top is above it, the
   * stream fetches again instead of giving up.
   */
  historyArrived(generation: number, result: HistoryResult): StreamStep[] {
    if (generation !== this.generation || !this.fetching) return [];
    const steps: StreamStep[] = [];
    const position = this.current as Position;

    const progress =
      result.epoch === position.epoch
        ? this.deliverRun(result.publications, steps)
        : 0;
    this.fetched += progress;
    this.dropHeldDuplicates();

    const next = this.held[0];
    const at = this.current as Position;
    if (next === undefined || next.offset === at.offset + 1) {
      steps.push(this.recoveredStep());
      this.release(steps);
      return steps;
    }
    // A page can stop short of `limit` (the server caps pages by size):
    // while reads make progress and the stream holds more, read again.
    if (progress > 0 && at.offset < result.offset) {
      steps.push(this.fetchStep());
      return steps;
    }
    if (this.readBeforeHeld(result, next) && this.staleReads < MAX_STALE) {
      this.staleReads += 1;
      steps.push(this.fetchStep());
      return steps;
    }
    return this.giveUp(steps);
  }

  /** The `history` request a `fetch` step asked for failed. */
  historyFailed(generation: number): StreamStep[] {
    if (generation !== this.generation || !this.fetching) return [];
    return this.giveUp([]);
  }

  private receiveInto(message: MessagePush, steps: StreamStep[]): void {
    const at = this.current;
    if (at === undefined) {
      this.deliver(message, steps);
      return;
    }

    if (message.epoch !== at.epoch) {
      // The held messages belong to the old epoch, whose gap can no longer
      // be filled; the discontinuity tells the app to refetch across both.
      this.reset();
      const offset = Math.max(0, message.offset - 1);
      const to = { epoch: message.epoch, offset };
      steps.push(this.discontinuity("epoch_changed", to));
      this.deliver(message, steps);
      return;
    }

    if (message.offset <= at.offset) return;
    if (this.fetching) {
      this.hold(message);
      return;
    }
    if (message.offset === at.offset + 1) {
      this.deliver(message, steps);
      return;
    }

    this.fetching = true;
    this.fetchFrom = at;
    this.fetched = 0;
    this.staleReads = 0;
    this.held = [message];
    steps.push(this.fetchStep());
  }

  /**
   * Delivers the messages of `run` that continue the position without a
   * gap, skipping duplicates; stops at the first gap. Returns how many.
   */
  private deliverRun(run: readonly MessagePush[], steps: StreamStep[]): number {
    let count = 0;
    for (const message of run) {
      const at = this.current as Position;
      if (message.epoch !== at.epoch || message.offset <= at.offset) continue;
      if (message.offset !== at.offset + 1) break;
      this.deliver(message, steps);
      count += 1;
    }
    return count;
  }

  private deliver(message: MessagePush, steps: StreamStep[]): void {
    this.current = { epoch: message.epoch, offset: message.offset };
    steps.push({ type: "deliver", message });
  }

  /** Inserts `message` in offset order, once. */
  private hold(message: MessagePush): void {
    const index = this.held.findIndex((m) => m.offset >= message.offset);
    if (index === -1) {
      this.held.push(message);
    } else if (this.held[index]?.offset !== message.offset) {
      this.held.splice(index, 0, message);
    }
  }

  private dropHeldDuplicates(): void {
    const at = this.current as Position;
    this.held = this.held.filter((m) => m.offset > at.offset);
  }

  /** Ends the recovery and replays the held messages as live ones. */
  private release(steps: StreamStep[]): void {
    const held = this.held;
    this.reset();
    for (const message of held) this.receiveInto(message, steps);
  }

  /** History cannot fill the gap: skip to the first held message. */
  private giveUp(steps: StreamStep[]): StreamStep[] {
    const first = this.held[0];
    if (first === undefined) {
      this.reset();
      return steps;
    }
    const to = { epoch: first.epoch, offset: first.offset - 1 };
    steps.push(this.discontinuity("gap", to));
    this.release(steps);
    return steps;
  }

  /** Records a hole up to `to` and moves the position there. */
  private discontinuity(reason: DiscontinuityReason, to: Position): StreamStep {
    const info = { reason, from: this.current, to };
    this.current = to;
    return { type: "discontinuity", info };
  }

  private fetchStep(): StreamStep {
    this.generation += 1;
    return {
      type: "fetch",
      since: this.current as Position,
      generation: this.generation,
    };
  }

  private recoveredStep(): StreamStep {
    const info: Recovery = {
      source: "history",
      from: this.fetchFrom as Position,
      count: this.fetched,
    };
    return { type: "recovered", info };
  }

  /**
   * Whether the history was read before the first held message was
   * published: it gave all it had, up to a top below that message, so a
   * new read can still fill the gap.
   */
  private readBeforeHeld(result: HistoryResult, next: MessagePush): boolean {
    const at = this.current as Position;
    return (
      result.epoch === at.epoch &&
      result.offset === at.offset &&
      result.offset < next.offset - 1
    );
  }

  private reached(top: Position): boolean {
    const at = this.current;
    return (
      at !== undefined && at.epoch === top.epoch && at.offset >= top.offset
    );
  }
}
