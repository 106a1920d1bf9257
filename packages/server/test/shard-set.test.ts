import { describe, expect, it } from "vitest";

import { ConfigError, resolveOptions } from "../src/index.js";

describe("redisUrl", () => {
  it.each([
    ["redis://a:1,redis://b:2", 'each is name=URL, got "redis://a:1"'],
    ["a=redis://h:1,a=redis://h:2", 'shard "a" twice'],
    ["a=nothing,b=redis://h:2", '"nothing" is not a URL'],
  ])("refuses %s with a ConfigError", (url, message) => {
    const resolve = () => resolveOptions({ engine: "redis", redisUrl: url });
    expect(resolve).toThrow(ConfigError);
    expect(resolve).toThrow(message);
  });
});
