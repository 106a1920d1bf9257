import type { Duplex } from "node:stream";

/**
 * Frames gathered per socket and written once per event-loop turn.
 *
 * Most of a node's fan-out cost is not building frames but the write to
 * each socket. Everything queued for a socket during one turn (a burst of
 * publications, a reply and the messages around it) leaves in a single
 * write, so a burst of eight costs about as much as one message.
 */
export class Outbox {
  private readonly frames: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly socket: Duplex,
    private readonly flusher: Flusher,
    private readonly owner: OutboxOwner,
  ) {}

  /** Bytes queued here or in the socket, not yet handed to the kernel. */
  get buffered(): number {
    return this.bytes + this.socket.writableLength;
  }

  /** Queues an encoded WebSocket frame; the buffer may be shared. */
  push(frame: Buffer): void {
    if (this.frames.length === 0) this.flusher.mark(this);
    this.frames.push(frame);
    this.bytes += frame.length;
    // A turn that queues more than the limit writes early, so the outbox
    // never holds more than the socket may.
    if (this.bytes > this.owner.outboundLimit) this.flush();
  }

  /**
   * Writes what is queued, in order, then reports an overflow when the
   * socket holds more than the limit the kernel did not take. Called by
   * the flusher, and before a close frame so nothing queued follows it.
   */
  flush(): void {
    const { frames, bytes, socket } = this;
    const count = frames.length;
    if (count === 0) return;
    // The array is kept and emptied, not replaced: a flush per socket per
    // turn must not allocate.
    this.bytes = 0;
    if (!this.owner.canWrite() || socket.destroyed) {
      frames.length = 0;
      return;
    }
    if (count === 1) {
      const frame = frames[0]!;
      frames.length = 0;
      socket.write(frame);
    } else if (bytes <= COPY_LIMIT) {
      const joined = Buffer.concat(frames, bytes);
      frames.length = 0;
      socket.write(joined);
    } else {
      // Large frames are not worth copying: corked writes leave in one
      // writev all the same.
      const all = frames.splice(0, count);
      socket.cork();
      for (const frame of all) socket.write(frame);
      socket.uncork();
    }
    if (socket.writableLength > this.owner.outboundLimit) {
      this.owner.overflowed();
    }
  }

  /** Drops what is queued; the socket is gone. */
  discard(): void {
    this.frames.length = 0;
    this.bytes = 0;
  }
}

/**
 * The connection an outbox writes for. Passed as one object rather than
 * callbacks: tens of thousands of connections each save the closures.
 */
export interface OutboxOwner {
  /** Bytes the socket may hold unsent after a flush. */
  readonly outboundLimit: number;
  /**
   * Whether data frames may still go out: false once a close frame was
   * sent or received, since nothing may follow it.
   */
  canWrite(): boolean;
  /** Called when a flush leaves more than `outboundLimit` bytes unsent. */
  overflowed(): void;
}

/** Up to this many queued bytes are copied into one buffer per write. */
const COPY_LIMIT = 64 * 1024;

/**
 * The outboxes with frames queued in this turn, flushed together once the
 * turn's I/O callbacks have run (setImmediate), so frames produced by
 * several reads of the same poll phase share a write.
 */
export class Flusher {
  private dirty: Outbox[] = [];

  /** Schedules `outbox` for the next flush. */
  mark(outbox: Outbox): void {
    if (this.dirty.length === 0) setImmediate(this.flush);
    this.dirty.push(outbox);
  }

  private readonly flush = (): void => {
    const dirty = this.dirty;
    this.dirty = [];
    for (const outbox of dirty) outbox.flush();
  };
}
