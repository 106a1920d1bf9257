/** Stop doubling past this many attempts, so the ceiling never overflows. */
const MAX_EXPONENT = 30;

/**
 * Full-jitter exponential backoff: the n-th delay is uniform in
 * [0, min(maxDelayMs, minDelayMs * 2^n)), so clients that lost the same
 * node spread out instead of returning as a herd. See "Exponential Backoff
 * And Jitter", AWS Architecture Blog, 2015:
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 *
 * The first delay may have a wider ceiling of its own (`firstCeilingMs`):
 * thousands of clients dropped in the same instant all draw their first
 * delay together, and only a wide first window keeps them from arriving
 * in the same second.
 */
export class Backoff {
  private attempts = 0;

  /**
   * @param minDelayMs ceiling of the first delay, doubled each attempt
   * @param maxDelayMs the ceiling never grows past this
   * @param random a source of numbers in [0, 1), for tests
   * @param firstCeilingMs ceiling of the first delay only
   */
  constructor(
    readonly minDelayMs: number,
    readonly maxDelayMs: number,
    private readonly random: () => number = Math.random,
    private readonly firstCeilingMs = minDelayMs,
  ) {}

  /** How many delays were handed out since the last `reset`. */
  get attempt(): number {
    return this.attempts;
  }

  /**
   * The next delay in ms. A `floorMs` the server asked for (5 s after 4429
   * or 4503) is added below the jittered part, so the herd stays spread
   * out above the floor instead of piling up on it.
   */
  next(floorMs = 0): number {
    const exponent = Math.min(this.attempts, MAX_EXPONENT);
    const ceiling =
      this.attempts === 0
        ? this.firstCeilingMs
        : Math.min(this.maxDelayMs, this.minDelayMs * 2 ** exponent);
    this.attempts += 1;
    return floorMs + Math.floor(this.random() * ceiling);
  }

  /** Starts over from `minDelayMs`, after a connection succeeded. */
  reset(): void {
    this.attempts = 0;
  }
}
