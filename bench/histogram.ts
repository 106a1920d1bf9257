/**
 * Latencies kept as counts in buckets 1 % wide, from 10 µs to a minute, so
 * client processes can send millions of samples as one small array.
 */
const FLOOR_MS = 0.01;
const GROWTH = 1.01;
const BUCKETS = Math.ceil(Math.log(6_000_000) / Math.log(GROWTH)) + 1;

/** Counts of latency samples by bucket. */
export class Histogram {
  readonly counts: number[];
  total = 0;

  constructor(counts?: readonly number[]) {
    this.counts = counts ? [...counts] : new Array<number>(BUCKETS).fill(0);
    this.total = this.counts.reduce((sum, n) => sum + n, 0);
  }

  /** Records one sample in ms. */
  add(ms: number): void {
    const scaled = Math.max(ms, FLOOR_MS) / FLOOR_MS;
    const index = Math.min(
      BUCKETS - 1,
      Math.floor(Math.log(scaled) / Math.log(GROWTH)),
    );
    this.counts[index]! += 1;
    this.total += 1;
  }

  /** Adds another histogram's samples to this one. */
  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
  }

  /** The sample at quantile `q` (0.5, 0.99), in ms; NaN when empty. */
  quantile(q: number): number {
    if (this.total === 0) return NaN;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return FLOOR_MS * GROWTH ** (i + 0.5);
    }
    return FLOOR_MS * GROWTH ** BUCKETS;
  }
}
