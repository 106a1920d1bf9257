import { describe, expect, it } from "vitest";

import {
  RedisUrlError,
  crc32,
  fingerprint,
  parseShards,
  placeShard,
} from "./shard-set.js";

describe("parseShards", () => {
  it("reads one plain URL as one shard", () => {
    expect(parseShards("redis://127.0.0.1:6380")).toEqual([
      {
        name: "default",
        url: "redis://127.0.0.1:6380",
        identity: "127.0.0.1:6380/0",
      },
    ]);
  });

  it("reads named shards, sorted by name", () => {
    const shards = parseShards("b=redis://Host-B/2, a=redis://:pw@host-a:7000");
    expect(shards.map((s) => [s.name, s.identity])).toEqual([
      ["a", "host-a:7000/0"],
      ["b", "host-b:6379/2"],
    ]);
  });

  it.each([
    ["redis://a:1,redis://b:2", 'each is name=URL, got "redis://a:1"'],
    ["a=redis://h:1,a=redis://h:2", 'shard "a" twice'],
    ["a=redis://h:1,b=redis://H:1/0", 'shards "a" and "b" are one server'],
    ["a b=redis://h:1,c=redis://h:2", 'shard name "a b" must be 1-32'],
    ["a=http://h:1,b=redis://h:2", "must start with redis:// or rediss://"],
    ["a=nothing,b=redis://h:2", '"nothing" is not a URL'],
  ])("refuses %s", (url, message) => {
    expect(() => parseShards(url)).toThrow(message);
    expect(() => parseShards(url)).toThrow(RedisUrlError);
  });
});

describe("fingerprint", () => {
  it("names each shard's server, sorted, without credentials", () => {
    const shards = parseShards("b=redis://u:secret@h:2,a=redis://h:1");
    expect(fingerprint(shards)).toBe("a=h:1/0,b=h:2/0");
  });

  it("is the name alone for one shard, whatever its address", () => {
    expect(fingerprint(parseShards("redis://h:1"))).toBe("default");
    expect(fingerprint(parseShards("redis://proxy:9"))).toBe("default");
  });
});

describe("placeShard", () => {
  it("computes the IEEE CRC-32", () => {
    expect(crc32("123456789")).toBe(0xcbf43926);
    expect(crc32("")).toBe(0);
    // UTF-8 bytes, not UTF-16 code units.
    expect(crc32("é")).toBe(0x0e048d3e);
  });

  it("puts a channel where its <name>:<channel> scores highest", () => {
    const shards = [{ name: "a" }, { name: "b" }, { name: "c" }];
    for (const channel of ["room:1", "room:2", "chat:x", "dm:alice"]) {
      const best = [...shards].sort(
        (x, y) => crc32(`${y.name}:${channel}`) - crc32(`${x.name}:${channel}`),
      )[0];
      expect(placeShard(shards, channel)).toBe(best);
    }
  });

  it("moves only the channels of a removed shard", () => {
    const three = [{ name: "a" }, { name: "b" }, { name: "c" }];
    const two = three.slice(0, 2);
    const channels = Array.from({ length: 300 }, (_, i) => `room:${i}`);
    const counts = new Map<string, number>();
    for (const channel of channels) {
      const before = placeShard(three, channel);
      counts.set(before.name, (counts.get(before.name) ?? 0) + 1);
      if (before.name !== "c") {
        expect(placeShard(two, channel)).toBe(before);
      }
    }
    // Spread: each of three shards holds a fair part of 300 channels.
    for (const name of ["a", "b", "c"]) {
      expect(counts.get(name)).toBeGreaterThan(60);
    }
  });
});
