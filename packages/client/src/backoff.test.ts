import { CloseCode, closeAction } from "@switchboard/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Backoff } from "./backoff.js";

const ALMOST_ONE = 1 - Number.EPSILON;

/** Runs `delays` through real `setTimeout`s under fake timers. */
async function firesAt(delays: number[]): Promise<number[]> {
  const start = Date.now();
  const fired: number[] = [];
  for (const delay of delays) {
    const done = new Promise<void>((resolve) => setTimeout(resolve, delay));
    await vi.advanceTimersByTimeAsync(delay);
    await done;
    fired.push(Date.now() - start);
  }
  return fired;
}

describe("backoff", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("backoff - full jitter stays in [0, ceiling)", () => {
    const low = new Backoff(500, 20_000, () => 0);
    const high = new Backoff(500, 20_000, () => ALMOST_ONE);
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const ceiling = Math.min(20_000, 500 * 2 ** attempt);
      expect(low.next()).toBe(0);
      const delay = high.next();
      expect(delay).toBeLessThan(ceiling);
      expect(delay).toBeGreaterThanOrEqual(ceiling - 1);
    }
  });

  it("backoff - spreads delays uniformly under the ceiling", () => {
    const delays = Array.from({ length: 2000 }, () => {
      const backoff = new Backoff(500, 20_000);
      backoff.next();
      backoff.next();
      return backoff.next();
    });
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThan(2000);
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
    expect(mean).toBeGreaterThan(850);
    expect(mean).toBeLessThan(1150);
  });

  it("backoff - doubles the ceiling from minDelayMs each attempt", async () => {
    const backoff = new Backoff(500, 20_000, () => ALMOST_ONE);
    const delays = [1, 2, 3, 4, 5].map(() => backoff.next() + 1);
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000]);
    expect(await firesAt(delays)).toEqual([500, 1500, 3500, 7500, 15_500]);
  });

  it("backoff - draws the first delay under its own ceiling", () => {
    const backoff = new Backoff(500, 20_000, () => ALMOST_ONE, 6_000);
    const delays = [1, 2, 3, 4].map(() => backoff.next() + 1);
    expect(delays).toEqual([6_000, 1_000, 2_000, 4_000]);
    backoff.reset();
    expect(backoff.next()).toBe(5_999);
  });

  it("backoff - a crowd's first delays fill no second above 20 % (C16)", () => {
    const seconds = new Array<number>(6).fill(0);
    for (let client = 0; client < 2_000; client += 1) {
      const first = new Backoff(500, 20_000, Math.random, 6_000).next();
      seconds[Math.floor(first / 1_000)]! += 1;
    }
    expect(Math.max(...seconds) / 2_000).toBeLessThanOrEqual(0.2);
    expect(Math.min(...seconds)).toBeGreaterThan(0);
  });

  it("backoff - caps the ceiling at maxDelayMs", () => {
    const backoff = new Backoff(500, 20_000, () => ALMOST_ONE);
    const delays = Array.from({ length: 40 }, () => backoff.next());
    expect(Math.max(...delays)).toBeLessThan(20_000);
    expect(delays.slice(6)).toEqual(Array(34).fill(19_999));
  });

  it("backoff - reset starts over from minDelayMs", () => {
    const backoff = new Backoff(500, 20_000, () => ALMOST_ONE);
    backoff.next();
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(499);
  });

  it("backoff - waits at least 5 s after 4429 and 4503", async () => {
    for (const code of [CloseCode.RateLimited, CloseCode.Unavailable]) {
      const action = closeAction(code);
      expect(action.kind).toBe("reconnect");
      const floor = action.kind === "reconnect" ? action.minDelayMs : 0;
      expect(floor).toBe(5000);

      const low = new Backoff(500, 20_000, () => 0);
      const high = new Backoff(500, 20_000, () => ALMOST_ONE);
      expect(low.next(floor)).toBe(5000);
      expect(high.next(floor)).toBe(5499);

      const fired = vi.fn();
      setTimeout(fired, low.next(floor));
      await vi.advanceTimersByTimeAsync(4999);
      expect(fired).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(1);
      expect(fired).toHaveBeenCalledOnce();
    }
  });

  it("backoff - adds no floor after ordinary closes", () => {
    for (const code of [1001, 1006, 1011, 4009, 4400, 4408, 4508, 4999]) {
      const action = closeAction(code);
      expect(action).toEqual({ kind: "reconnect", minDelayMs: 0 });
    }
  });
});
