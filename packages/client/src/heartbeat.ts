/**
 * The SDK's side of DESIGN.md "Operations: Heartbeat": after `intervalMs`
 * with nothing received it sends a `ping`; if nothing at all arrives within
 * `timeoutMs` after that, the connection is dead.
 *
 * Frames only record a timestamp; one timer checks it, so a busy
 * connection costs no timer churn.
 */
export class Heartbeat {
  private lastReceived = 0;
  private pingSentAt: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param intervalMs idle time before a ping; 0 disables the heartbeat
   * @param timeoutMs time allowed for anything to arrive after the ping
   * @param ping sends the `ping` request
   * @param dead called once when the peer stayed silent too long
   */
  constructor(
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly ping: () => void,
    private readonly dead: () => void,
  ) {}

  /** Starts watching, counting from now. */
  start(): void {
    if (this.intervalMs <= 0) return;
    this.lastReceived = Date.now();
    this.schedule(this.intervalMs);
  }

  /** Records that a frame arrived. */
  received(): void {
    this.lastReceived = Date.now();
  }

  /** Stops watching for good. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private check = (): void => {
    const now = Date.now();
    const sentAt = this.pingSentAt;

    if (sentAt !== undefined && this.lastReceived < sentAt) {
      const waited = now - sentAt;
      if (waited >= this.timeoutMs) {
        this.timer = undefined;
        this.dead();
        return;
      }
      this.schedule(this.timeoutMs - waited);
      return;
    }

    this.pingSentAt = undefined;
    const idle = now - this.lastReceived;
    if (idle < this.intervalMs) {
      this.schedule(this.intervalMs - idle);
      return;
    }
    this.pingSentAt = now;
    this.ping();
    this.schedule(this.timeoutMs);
  };

  private schedule(delayMs: number): void {
    this.timer = setTimeout(this.check, delayMs);
  }
}
