/**
 * A token bucket: `rate` tokens a second up to `burst`. Also counts the
 * refusals within a window, so a client that keeps pushing can be closed.
 */
export class RateLimiter {
  private tokens: number;
  private refilledAt = Date.now();
  private refusals: number[] = [];

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly window: number,
  ) {
    this.tokens = burst;
  }

  /** Takes a token; returns 0, or the ms until one is available. */
  take(now: number): number {
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((now - this.refilledAt) * this.rate) / 1000,
    );
    this.refilledAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    this.refusals = this.refusals.filter((at) => now - at < this.window);
    this.refusals.push(now);
    return Math.ceil(((1 - this.tokens) * 1000) / Math.max(this.rate, 1e-9));
  }

  /** Refusals within the window. */
  get recentRefusals(): number {
    return this.refusals.length;
  }
}
