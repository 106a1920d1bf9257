import { createHash } from "node:crypto";

import { describe, expect, it } from "vitest";

import {
  clusterGeneration,
  clusterRetryDelay,
  isClusterInfo,
  keySlot,
  redisCredentials,
  redisIds,
  retryUnrun,
} from "./redis-cluster.js";

describe("keySlot", () => {
  it("is CRC16 (XMODEM) of the key modulo 16384", () => {
    // 0x31c3 is the XMODEM check value of "123456789".
    expect(keySlot("123456789")).toBe(0x31c3);
    expect(keySlot("foo")).toBe(12182);
  });

  it("hashes the hash tag alone when it is not empty", () => {
    expect(keySlot("sb:1:{room:1}:m")).toBe(keySlot("room:1"));
    // The examples of the Redis Cluster specification.
    expect(keySlot("foo{{bar}}zap")).toBe(keySlot("{bar"));
    expect(keySlot("foo{bar}{zap}")).toBe(keySlot("bar"));
    expect(keySlot("foo{}{bar}")).not.toBe(keySlot("bar"));
    expect(keySlot("x{é}y")).toBe(keySlot("é"));
  });
});

describe("cluster generation", () => {
  it("reads the run and replication ids from INFO", () => {
    expect(
      redisIds(
        "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\n",
        "# Replication\r\nrole:master\r\nmaster_replid:def456\r\n",
      ),
    ).toEqual({ run: "abc123", repl: "def456" });
    expect(redisIds("", "")).toEqual({ run: "", repl: "" });
  });

  it("is the first 8 base64url characters of SHA-1 of run:repl", () => {
    for (const [run, repl] of [
      ["abc123", "def456"],
      ["", ""],
      ["9f1c0e", "77aa01"],
    ] as const) {
      const expected = createHash("sha1")
        .update(`${run}:${repl}`)
        .digest("base64url")
        .slice(0, 8);
      expect(clusterGeneration({ run, repl })).toBe(expected);
    }
  });

  it("tells a cluster node by INFO cluster", () => {
    expect(isClusterInfo("# Cluster\r\ncluster_enabled:1\r\n")).toBe(true);
    expect(isClusterInfo("# Cluster\r\ncluster_enabled:0\r\n")).toBe(false);
  });
});

describe("clusterRetryDelay", () => {
  it("retries what the cluster did not run, doubling, then gives up", () => {
    const moved = new Error("MOVED 3999 127.0.0.1:7001");
    expect(clusterRetryDelay(moved, 0)).toBe(20);
    expect(clusterRetryDelay(new Error("TRYAGAIN x"), 1)).toBe(40);
    expect(clusterRetryDelay(new Error("CLUSTERDOWN down"), 6)).toBe(1280);
    expect(clusterRetryDelay(new Error("ASK 1 h:1"), 7)).toBeUndefined();
  });

  it("never retries a command that may have run", () => {
    expect(clusterRetryDelay(new Error("ERR wrong type"), 0)).toBeUndefined();
    expect(clusterRetryDelay(new Error("Socket closed"), 0)).toBeUndefined();
  });
});

describe("redisCredentials", () => {
  it("decodes the user and password of a URL", () => {
    expect(redisCredentials("redis://us%40r:p%3Aw@h:1")).toEqual({
      username: "us@r",
      password: "p:w",
    });
    expect(redisCredentials("redis://h:1")).toEqual({});
  });
});

describe("retryUnrun", () => {
  it("sends again what the cluster did not run, then replies", async () => {
    const replies = [new Error("TRYAGAIN"), new Error("CLUSTERDOWN x"), "OK"];
    let calls = 0;
    const reply = await retryUnrun(async () => {
      const next = replies[calls++]!;
      if (next instanceof Error) throw next;
      return next;
    });
    expect([reply, calls]).toEqual(["OK", 3]);
  });

  it("rejects at once with an error of a command that ran", async () => {
    let calls = 0;
    await expect(
      retryUnrun(() => {
        calls += 1;
        return Promise.reject(new Error("ERR wrong type"));
      }),
    ).rejects.toThrow("ERR wrong type");
    expect(calls).toBe(1);
  });
});
