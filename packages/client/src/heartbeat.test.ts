import {
  afterEach,
  beforeEach,
  describe,
  expect,
  it,
  vi,
  type Mock,
} from "vitest";

import { Heartbeat } from "./heartbeat.js";

describe("heartbeat", () => {
  let ping: Mock<() => void>;
  let dead: Mock<() => void>;
  let heartbeat: Heartbeat;

  beforeEach(() => {
    vi.useFakeTimers();
    ping = vi.fn<() => void>();
    dead = vi.fn<() => void>();
    heartbeat = new Heartbeat(25_000, 10_000, ping, dead);
  });

  afterEach(() => {
    heartbeat.stop();
    vi.useRealTimers();
  });

  it("heartbeat - pings after the interval with nothing received", () => {
    heartbeat.start();
    vi.advanceTimersByTime(24_999);
    expect(ping).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(ping).toHaveBeenCalledOnce();
  });

  it("heartbeat - does not ping while frames arrive", () => {
    heartbeat.start();
    for (let i = 0; i < 10; i += 1) {
      vi.advanceTimersByTime(20_000);
      heartbeat.received();
    }
    expect(ping).not.toHaveBeenCalled();
    vi.advanceTimersByTime(25_000);
    expect(ping).toHaveBeenCalledOnce();
  });

  it("heartbeat - is dead when nothing arrives within the timeout", () => {
    heartbeat.start();
    vi.advanceTimersByTime(25_000);
    vi.advanceTimersByTime(9_999);
    expect(dead).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(dead).toHaveBeenCalledOnce();
  });

  it("heartbeat - any frame after the ping keeps it alive", () => {
    heartbeat.start();
    vi.advanceTimersByTime(25_000);
    vi.advanceTimersByTime(5_000);
    heartbeat.received();
    vi.advanceTimersByTime(20_000);
    expect(dead).not.toHaveBeenCalled();
    expect(ping).toHaveBeenCalledOnce();
    vi.advanceTimersByTime(5_000);
    expect(ping).toHaveBeenCalledTimes(2);
  });

  it("heartbeat - an interval of 0 disables it", () => {
    const off = new Heartbeat(0, 10_000, ping, dead);
    off.start();
    vi.advanceTimersByTime(1_000_000);
    expect(ping).not.toHaveBeenCalled();
    expect(dead).not.toHaveBeenCalled();
  });

  it("heartbeat - stop cancels every check", () => {
    heartbeat.start();
    heartbeat.stop();
    vi.advanceTimersByTime(100_000);
    expect(ping).not.toHaveBeenCalled();
  });
});
