import { describe, expect, it } from "vitest";

import { InvalidArgumentError } from "./errors.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_DELAY_MS,
  DEFAULT_MIN_DELAY_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  resolveClientOptions,
} from "./options.js";
import { randomId } from "./random-id.js";

describe("client options", () => {
  it("options - fills in the defaults", () => {
    const options = resolveClientOptions({ url: "ws://127.0.0.1:8080/ws" });
    expect(options).toMatchObject({
      minDelayMs: DEFAULT_MIN_DELAY_MS,
      maxDelayMs: DEFAULT_MAX_DELAY_MS,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    });
    expect([DEFAULT_MIN_DELAY_MS, DEFAULT_MAX_DELAY_MS]).toEqual([500, 20_000]);
  });

  it("options - turns http(s) URLs into ws(s)", () => {
    expect(resolveClientOptions({ url: "https://a.example/ws" }).url).toBe(
      "wss://a.example/ws",
    );
    expect(resolveClientOptions({ url: "http://a.example/ws" }).url).toBe(
      "ws://a.example/ws",
    );
  });

  it("options - throws naming the bad option", () => {
    const bad = [
      [{ url: "ftp://x" }, /url/],
      [{ url: "not a url" }, /url/],
      [{ url: "ws://x", minDelayMs: 0 }, /minDelayMs/],
      [{ url: "ws://x", minDelayMs: 100, maxDelayMs: 50 }, /maxDelayMs/],
      [{ url: "ws://x", session: "has space" }, /session/],
      [{ url: "ws://x", requestTimeoutMs: Number.NaN }, /requestTimeoutMs/],
    ] as const;
    for (const [options, message] of bad) {
      expect(() => resolveClientOptions(options)).toThrow(InvalidArgumentError);
      expect(() => resolveClientOptions(options)).toThrow(message);
    }
  });

  it("options - random ids are valid sessions and keys", () => {
    const ids = new Set(Array.from({ length: 100 }, () => randomId()));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
