import { generateKeyPairSync } from "node:crypto";
import { createServer, type Server } from "node:net";

import { SwitchboardClient, type Message } from "@switchboard/client";
import { createNode, type SwitchboardNode } from "@switchboard/server";
import { decodeJwt } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import {
  spawnOnFreePort,
  startRedis,
  stopChild,
  type OwnRedis,
} from "../../server/test/redis-server.js";
import {
  ApiError,
  InvalidArgumentError,
  KeyError,
  NetworkError,
  SwitchboardApi,
  TimeoutError,
  mintToken,
} from "../src/index.js";
import { RedisPublisher } from "../src/redis.js";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const API_KEY = "test-api-key";

interface Running {
  node: SwitchboardNode;
  url: string;
}

/** Data JSON cannot carry as it is, each with a reason the error names. */
function unserializable(): [string, unknown, string][] {
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  return [
    ["BigInt", { n: 1n }, "data.n is a bigint"],
    ["circular", circular, "data.self refers back to itself"],
    ["function", () => 1, "data is a function"],
    ["nested undefined", { a: [1, undefined] }, "data.a[1] is undefined"],
    ["NaN", { n: NaN }, "data.n is NaN"],
    ["Date", { at: new Date(0) }, "data.at is not a plain object"],
  ];
}

const nodes: SwitchboardNode[] = [];
const clients: SwitchboardClient[] = [];

async function start(
  options: Parameters<typeof createNode>[0] = {},
): Promise<Running> {
  const node = createNode({ port: 0, ...options });
  nodes.push(node);
  const { port } = await node.listen();
  return { node, url: `http://127.0.0.1:${port}` };
}

async function listen(url: string, channel: string, token?: string) {
  const client = new SwitchboardClient({
    url: url.replace("http", "ws") + "/ws",
    token,
  });
  clients.push(client);
  const messages: Message[] = [];
  const subscription = client.subscribe(channel);
  subscription.on("message", (message) => messages.push(message));
  await client.connect();
  await subscription.ready();
  return { client, subscription, messages };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
});

describe("SwitchboardApi", () => {
  it("publishes to subscribers and returns the position", async () => {
    const { url } = await start({ tokenSecret: SECRET, apiKey: API_KEY });
    const token = await mintToken({
      user: "alice",
      secret: SECRET,
      grants: { subscribe: ["room:*"] },
    });
    const { messages } = await listen(url, "room:1", token);
    const api = new SwitchboardApi({ url, apiKey: API_KEY });

    const first = await api.publish("room:1", { text: "one" });
    const second = await api.publish("room:1", { text: "two" }, { key: "k1" });
    const again = await api.publish("room:1", { text: "two" }, { key: "k1" });

    expect(first.offset).toBe(1);
    expect(second).toEqual({ epoch: first.epoch, offset: 2 });
    expect(again).toEqual({ epoch: first.epoch, offset: 2, duplicate: true });
    await until(() => messages.length === 2, "two messages");
    expect(messages.map((message) => message.data)).toEqual([
      { text: "one" },
      { text: "two" },
    ]);
    expect(messages[0]!.publisher).toBeUndefined();
  });

  it("broadcasts, reads history and presence, disconnects a user", async () => {
    const { url } = await start({ tokenSecret: SECRET, apiKey: API_KEY });
    const token = await mintToken({
      user: "bob",
      secret: SECRET,
      grants: { subscribe: ["room:*"] },
    });
    const { client } = await listen(url, "room:a", token);
    const api = new SwitchboardApi({
      url: url.replace("http", "ws"),
      apiKey: API_KEY,
    });

    const results = await api.broadcast(["room:a", "room:b"], "hello");
    expect(results.map((result) => [result.channel, result.offset])).toEqual([
      ["room:a", 1],
      ["room:b", 1],
    ]);
    const history = await api.history("room:b", { limit: 10 });
    expect(history.offset).toBe(1);
    expect(history.publications.map((p) => p.data)).toEqual(["hello"]);
    const presence = await api.presence("room:a");
    expect(presence.members.map((member) => member.user)).toEqual(["bob"]);

    const stopped = new Promise((resolve) =>
      client.once("disconnected", resolve),
    );
    expect(await api.disconnect("bob")).toBe(1);
    expect(await stopped).toMatchObject({ code: 4000, reconnect: false });
  });

  it("rejects with typed errors", async () => {
    const { url } = await start({ tokenSecret: SECRET, apiKey: API_KEY });

    const wrongKey = new SwitchboardApi({ url, apiKey: "wrong" });
    const refused = await wrongKey.publish("room:1", 1).catch((e) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({
      code: "SB_ERR_API",
      status: 401,
      serverCode: "unauthorized",
      temporary: false,
    });

    const api = new SwitchboardApi({ url, apiKey: API_KEY });
    const large = await api
      .publish("room:1", "x".repeat(70_000))
      .catch((e) => e);
    expect(large).toMatchObject({ status: 413, serverCode: "too_large" });
    await expect(api.publish("bad channel", 1)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(() => new SwitchboardApi({ url: "ftp://x" })).toThrow(
      InvalidArgumentError,
    );

    const closed = new SwitchboardApi({ url: "http://127.0.0.1:1" });
    await expect(closed.publish("room:1", 1)).rejects.toMatchObject({
      code: "SB_ERR_NETWORK",
    });
  });

  it("refuses data JSON cannot carry, sending nothing", async () => {
    const { node, url } = await start({ apiKey: API_KEY });
    const api = new SwitchboardApi({ url, apiKey: API_KEY });
    for (const [what, data, message] of unserializable()) {
      const error = await api.publish("room:1", data as never).catch((e) => e);
      expect(error, what).toBeInstanceOf(InvalidArgumentError);
      expect(error.code).toBe("SB_ERR_INVALID_ARGUMENT");
      expect(error.message).toContain(message);
      await expect(
        api.broadcast(["room:1"], data as never),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect((await api.history("room:1")).offset).toBe(0);
    expect(await node.publish("room:1", "first")).toMatchObject({ offset: 1 });
  });

  it("gives up after timeoutMs on a server that never answers", async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) =>
      silent.listen(0, "127.0.0.1", resolve),
    );
    const { port } = silent.address() as { port: number };
    try {
      const api = new SwitchboardApi({
        url: `http://127.0.0.1:${port}`,
        timeoutMs: 200,
      });
      const error = await api.publish("room:1", 1).catch((e) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect(error.code).toBe("SB_ERR_TIMEOUT");
    } finally {
      silent.close();
    }
  });
});

describe("mintToken", () => {
  it("signs the sb grants claim that the node enforces (HS256)", async () => {
    const { url } = await start({ tokenSecret: SECRET });
    const token = await mintToken({
      user: "carol",
      secret: SECRET,
      grants: { subscribe: ["room:*"], publish: ["room:1"] },
      expiresInMs: 60_000,
    });
    const claims = decodeJwt(token);
    expect(claims.sub).toBe("carol");
    expect(claims.sb).toEqual({ subscribe: ["room:*"], publish: ["room:1"] });
    expect(claims.exp! - claims.iat!).toBe(60);

    const { client, messages } = await listen(url, "room:1", token);
    expect(await client.publish("room:1", "mine")).toMatchObject({ offset: 1 });
    await expect(client.publish("room:2", "not granted")).rejects.toMatchObject(
      {
        serverCode: "forbidden",
      },
    );
    await until(() => messages.length === 1, "own message");
    expect(messages[0]!.publisher?.user).toBe("carol");
  });

  it.each(["RS256", "ES256"] as const)(
    "signs %s with a private key the node verifies",
    async (algorithm) => {
      const { publicKey, privateKey } =
        algorithm === "RS256"
          ? generateKeyPairSync("rsa", { modulusLength: 2048 })
          : generateKeyPairSync("ec", { namedCurve: "P-256" });
      const { url } = await start({
        tokenPublicKey: publicKey.export({
          type: "spki",
          format: "pem",
        }) as string,
      });
      const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      const token = await mintToken({
        user: "dave",
        privateKey: pem,
        algorithm,
        grants: { subscribe: ["room:1"] },
      });
      const { subscription } = await listen(url, "room:1", token);
      expect(subscription.state).toBe("subscribed");
    },
  );

  it("refuses bad options with clear errors", async () => {
    await expect(mintToken({ user: "", secret: SECRET })).rejects.toThrow(
      "user must be a non-empty string",
    );
    await expect(mintToken({ user: "a" })).rejects.toThrow(
      "pass exactly one of secret, privateKey",
    );
    await expect(mintToken({ user: "a", secret: "" })).rejects.toThrow(
      "secret must be a non-empty string",
    );
    await expect(
      mintToken({ user: "a", secret: SECRET, grants: { subscribe: ["a b"] } }),
    ).rejects.toThrow('grants.subscribe: "a b" is not a channel name');
    await expect(
      mintToken({ user: "a", secret: SECRET, algorithm: "ES256" }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    const error = await mintToken({
      user: "a",
      privateKey: "not a pem",
      algorithm: "ES256",
    }).catch((e) => e);
    expect(error).toBeInstanceOf(KeyError);
    expect(error.code).toBe("SB_ERR_KEY");
  });
});

describe("RedisPublisher", () => {
  let redis: OwnRedis;

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await redis.stop();
  });

  it("publishes into Redis exactly as a node does", async () => {
    const options = { engine: "redis" as const, redisUrl: redis.url };
    const a = await start(options);
    const b = await start(options);
    const onA = await listen(a.url, "room:r");
    const onB = await listen(b.url, "room:r");
    const publisher = new RedisPublisher({ url: redis.url });
    try {
      const viaNode = await a.node.publish("room:r", "through a node");
      const direct = await publisher.publish("room:r", { via: "redis" });
      const keyed = await publisher.publish("room:r", 3, { key: "once" });
      const repeated = await publisher.publish("room:r", 3, { key: "once" });

      expect(direct).toEqual({ epoch: viaNode.epoch, offset: 2 });
      expect(keyed.offset).toBe(3);
      expect(repeated).toEqual({ ...keyed, duplicate: true });
      for (const { messages } of [onA, onB]) {
        await until(() => messages.length === 3, "three messages");
        expect(messages.map((m) => [m.epoch, m.offset, m.data])).toEqual([
          [viaNode.epoch, 1, "through a node"],
          [viaNode.epoch, 2, { via: "redis" }],
          [viaNode.epoch, 3, 3],
        ]);
      }
      const history = await onB.client.history("room:r", { limit: 10 });
      expect(history.publications.map((p) => p.data)).toEqual([
        "through a node",
        { via: "redis" },
        3,
      ]);

      const broadcast = await publisher.broadcast(["room:r", "room:s"], "all");
      expect(broadcast.map((r) => [r.channel, r.offset])).toEqual([
        ["room:r", 4],
        ["room:s", 1],
      ]);
      await expect(
        publisher.publish("room:r", "x".repeat(70_000)),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
    } finally {
      await publisher.close();
    }
  });

  it("keeps a namespace's history settings", async () => {
    const node = await start({
      engine: "redis",
      redisUrl: redis.url,
      namespaces: { typing: { historySize: 0 } },
    });
    const { messages, client } = await listen(node.url, "typing:t");
    const publisher = new RedisPublisher({
      url: redis.url,
      namespaces: { typing: { historySize: 0 } },
    });
    try {
      await publisher.publish("typing:t", "now");
      await until(() => messages.length === 1, "the live message");
      const history = await client.history("typing:t", { limit: 10 });
      expect(history.offset).toBe(1);
      expect(history.publications).toEqual([]);
    } finally {
      await publisher.close();
    }
  });

  it("reports an unreachable Redis as a NetworkError", async () => {
    const publisher = new RedisPublisher({ url: "redis://127.0.0.1:1" });
    try {
      await expect(publisher.publish("room:1", 1)).rejects.toBeInstanceOf(
        NetworkError,
      );
    } finally {
      await publisher.close();
    }
  });

  it("refuses data JSON cannot carry, sending nothing", async () => {
    const publisher = new RedisPublisher({ url: redis.url });
    const node = await start({ engine: "redis", redisUrl: redis.url });
    try {
      for (const [what, data, message] of unserializable()) {
        const error = await publisher
          .publish("room:bad", data as never)
          .catch((e) => e);
        expect(error, what).toBeInstanceOf(InvalidArgumentError);
        expect(error.message).toContain(message);
      }
      const api = new SwitchboardApi({ url: node.url });
      expect((await api.history("room:bad")).offset).toBe(0);
    } finally {
      await publisher.close();
    }
  });

  it("gives a TimeoutError after timeoutMs when Redis is silent", async () => {
    const { port, child } = await spawnOnFreePort(undefined, []);
    const publisher = new RedisPublisher({
      url: `redis://127.0.0.1:${port}`,
      timeoutMs: 300,
    });
    try {
      expect(await publisher.publish("room:t", "before")).toMatchObject({
        offset: 1,
      });
      child.kill("SIGSTOP");
      const error = await publisher.publish("room:t", "paused").catch((e) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect(error.code).toBe("SB_ERR_TIMEOUT");
      child.kill("SIGCONT");
      // The timed-out publish ran when Redis resumed: it may or may not
      // have, as the error says; this one lands after it.
      expect(await publisher.publish("room:t", "after")).toMatchObject({
        offset: 3,
      });
    } finally {
      child.kill("SIGCONT");
      await publisher.close();
      await stopChild(child);
    }
  });

  it("refuses bad settings when built", () => {
    expect(() => new RedisPublisher({ historySize: -1 })).toThrow(
      "historySize must be an integer of 0 or more",
    );
    expect(() => new RedisPublisher({ timeoutMs: 0 })).toThrow(
      "timeoutMs must be a number above 0",
    );
  });
});
