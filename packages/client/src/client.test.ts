import { createNode, type NodeOptions } from "@switchboard/server";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";

import {
  Proxy,
  grantAll,
  lossyWebSocket,
  signToken,
  sleep,
  waitFor,
} from "../test/helpers.js";
import { SwitchboardClient } from "./client.js";
import type { Disconnected } from "./events.js";
import type { ClientOptions } from "./options.js";
import type { Discontinuity, Recovery } from "./channel-stream.js";
import type { Message, Subscription } from "./subscription.js";
import {
  ClosedError,
  DisconnectedError,
  InvalidArgumentError,
  ServerError,
  TimeoutError,
  UnauthorizedError,
} from "./errors.js";

const SECRET = "test-secret-of-enough-length-0123456789";

type Node = ReturnType<typeof createNode>;

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A real node on a free loopback port, behind a fault-injecting proxy. */
async function startNode(
  options: NodeOptions = {},
): Promise<{ node: Node; proxy: Proxy; port: number }> {
  const node = createNode({ host: "127.0.0.1", port: 0, ...options });
  const { port } = await node.listen();
  const proxy = await Proxy.start(port);
  cleanups.push(() => node.close());
  cleanups.push(() => proxy.close());
  return { node, proxy, port };
}

function newClient(
  url: string,
  options: Partial<ClientOptions> = {},
): SwitchboardClient {
  const client = new SwitchboardClient({
    url,
    minDelayMs: 20,
    reconnectSpreadMs: 20,
    maxDelayMs: 200,
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

/** Collects a subscription's messages and stream events. */
function record(subscription: Subscription): {
  messages: Message[];
  offsets: () => number[];
  holes: Discontinuity[];
  recoveries: Recovery[];
} {
  const messages: Message[] = [];
  const holes: Discontinuity[] = [];
  const recoveries: Recovery[] = [];
  subscription.on("message", (m) => messages.push(m));
  subscription.on("discontinuity", (d) => holes.push(d));
  subscription.on("recovered", (r) => recoveries.push(r));
  return {
    messages,
    offsets: () => messages.map((m) => m.offset),
    holes,
    recoveries,
  };
}

function disconnects(client: SwitchboardClient): Disconnected[] {
  const seen: Disconnected[] = [];
  client.on("disconnected", (d) => seen.push(d));
  return seen;
}

describe("client against a real node", () => {
  it("connect - subscribes and receives messages in order", async () => {
    const { node, proxy } = await startNode();
    const client = newClient(proxy.url);
    const states: string[] = [];
    client.on("state", ({ to }) => states.push(to));

    const result = await client.connect();
    expect(result.protocol).toBe(1);
    expect(result.session).toBe(client.session);
    expect(client.state).toBe("connected");
    expect(states).toEqual(["connecting", "connected"]);

    const subscription = client.subscribe("room:order");
    const seen = record(subscription);
    await subscription.ready();
    for (let i = 1; i <= 5; i += 1) {
      await node.publish("room:order", { i });
    }
    await waitFor(() => seen.messages.length === 5, "5 messages");
    expect(seen.offsets()).toEqual([1, 2, 3, 4, 5]);
    expect(seen.messages.map((m) => m.data)).toEqual([
      { i: 1 },
      { i: 2 },
      { i: 3 },
      { i: 4 },
      { i: 5 },
    ]);
  });

  it("connect - sends what was queued before connect()", async () => {
    const { proxy } = await startNode();
    const client = newClient(proxy.url);
    const subscription = client.subscribe("room:queued");
    const seen = record(subscription);
    const published = client.publish("room:queued", "hello");
    expect(client.state).toBe("disconnected");

    await client.connect();
    expect(await published).toMatchObject({ offset: 1 });
    await subscription.ready();
    const stored = await client.history("room:queued", { limit: 10 });
    expect(stored.publications.map((p) => p.data)).toEqual(["hello"]);

    // The subscribe and the publish raced on the node; either way the
    // subscription starts after or delivers offset 1, never loses it.
    await client.publish("room:queued", "again");
    await waitFor(() => seen.offsets().includes(2), "own message");
    expect(seen.messages.at(-1)?.publisher?.client).toBe(
      client.connectResult?.client,
    );
  });

  it("publish - resolves with ok; a repeated key is a duplicate", async () => {
    const { proxy } = await startNode();
    const client = newClient(proxy.url);
    await client.connect();
    const subscription = client.subscribe("room:dedupe");
    const seen = record(subscription);
    await subscription.ready();

    const first = await client.publish("room:dedupe", 1, { key: "k-1" });
    expect(first).toMatchObject({ offset: 1 });
    expect(first.duplicate).toBeUndefined();
    const again = await client.publish("room:dedupe", 1, { key: "k-1" });
    expect(again).toEqual({ ...first, duplicate: true });
    const other = await client.publish("room:dedupe", 2);
    expect(other.offset).toBe(2);

    await waitFor(() => seen.messages.length === 2, "2 messages");
    await sleep(50);
    expect(seen.offsets()).toEqual([1, 2]);
  });

  it("publish - a retry after a lost reply is deduplicated", async () => {
    const { node, proxy, port } = await startNode();
    const observer = newClient(`ws://127.0.0.1:${port}/ws`);
    await observer.connect();
    const watched = observer.subscribe("room:retry");
    const seen = record(watched);
    await watched.ready();

    const client = newClient(proxy.url);
    await client.connect();
    proxy.mode = "mute";
    const published = client.publish("room:retry", { n: 1 });

    // The node got it and fanned it out; only the reply is lost.
    await waitFor(() => seen.messages.length === 1, "the publish to land");
    proxy.mode = "pass";
    proxy.cut();

    const result = await published;
    expect(result).toMatchObject({ offset: 1, duplicate: true });
    await sleep(100);
    expect(seen.offsets()).toEqual([1]);
    expect(node.connectionCount).toBe(2);
  });

  it("publish - offline past the idempotency window times out", async () => {
    const { proxy } = await startNode({ idempotencyWindow: 300 });
    const client = newClient(proxy.url);
    await client.connect();
    expect(client.connectResult?.limits.idempotencyWindow).toBe(300);

    proxy.mode = "refuse";
    proxy.cut();
    await waitFor(() => client.state !== "connected", "disconnect");
    const started = Date.now();
    const error = await client.publish("room:late", 1).catch((e) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.code).toBe("SB_ERR_TIMEOUT");
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it("publish - a refusal rejects with the server's code", async () => {
    const { proxy } = await startNode({
      namespaces: { ro: { clientPublish: false } },
    });
    const client = newClient(proxy.url);
    await client.connect();
    const error = await client.publish("ro:x", 1).catch((e) => e);
    expect(error).toBeInstanceOf(ServerError);
    expect(error).toMatchObject({ serverCode: "forbidden", temporary: false });
  });

  it("publish - data over maxMessageSize is refused, not sent", async () => {
    const { proxy } = await startNode({
      maxMessageSize: 1_000,
      frameLimit: 2_000,
    });
    const client = newClient(proxy.url);
    await client.connect();
    let reconnects = 0;
    client.on("disconnected", () => (reconnects += 1));

    const error = await client
      .publish("big:1", "x".repeat(5_000))
      .catch((e) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toBe(
      "data is 5002 bytes, over the server's maxMessageSize of 1000",
    );
    expect(await client.publish("big:1", "small")).toMatchObject({
      offset: 1,
    });
    expect(reconnects).toBe(0);
    expect(client.state).toBe("connected");
  });

  it("reconnect - backs off from a node that drops at once", async () => {
    // A peer that answers connect, then closes: a faulty node, not a mock
    // of a good one.
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    let attempts = 0;
    server.on("connection", (ws) => {
      attempts += 1;
      ws.on("message", (raw) => {
        const { id } = JSON.parse(String(raw));
        ws.send(
          JSON.stringify({
            type: "ok",
            id,
            result: { client: "c", node: "n", session: "s", protocol: 1 },
          }),
        );
        ws.close(1011, "broken");
      });
    });
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    await new Promise((r) => server.once("listening", r));
    const { port } = server.address() as { port: number };

    const client = newClient(`ws://127.0.0.1:${port}/ws`, {
      minDelayMs: 50,
      maxDelayMs: 10_000,
    });
    void client.connect().catch(() => undefined);
    await sleep(1_500);
    // Doubling from 50 ms, the delays add up past 1.5 s within ~6 tries;
    // a backoff reset on every accepted connect would allow ~60.
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(10);
  });

  it("reconnect - recovers exactly the missed messages", async () => {
    const { node, proxy } = await startNode();
    const client = newClient(proxy.url);
    await client.connect();
    const subscription = client.subscribe("room:recover");
    const seen = record(subscription);
    await subscription.ready();
    for (let i = 1; i <= 3; i += 1) await node.publish("room:recover", i);
    await waitFor(() => seen.messages.length === 3, "first 3");

    proxy.mode = "refuse";
    proxy.cut();
    await waitFor(() => client.state !== "connected", "disconnect");
    for (let i = 4; i <= 6; i += 1) await node.publish("room:recover", i);
    await sleep(100);
    expect(seen.messages.length).toBe(3);

    proxy.mode = "pass";
    await waitFor(() => seen.messages.length === 6, "missed ones");
    await node.publish("room:recover", 7);
    await waitFor(() => seen.messages.length === 7, "live one");

    expect(seen.offsets()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(seen.messages.map((m) => m.data)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(seen.holes).toEqual([]);
    expect(seen.recoveries).toEqual([
      {
        source: "subscribe",
        from: { epoch: subscription.position?.epoch, offset: 3 },
        count: 3,
      },
    ]);
  });

  it("reconnect - a failed recovery raises a discontinuity", async () => {
    const { node, proxy } = await startNode({ historySize: 2 });
    const client = newClient(proxy.url);
    await client.connect();
    const subscription = client.subscribe("room:lossy");
    const seen = record(subscription);
    await subscription.ready();
    await node.publish("room:lossy", 1);
    await waitFor(() => seen.messages.length === 1, "first");

    proxy.mode = "refuse";
    proxy.cut();
    await waitFor(() => client.state !== "connected", "disconnect");
    for (let i = 2; i <= 6; i += 1) await node.publish("room:lossy", i);
    proxy.mode = "pass";

    await waitFor(() => seen.holes.length === 1, "discontinuity");
    expect(seen.holes[0]).toMatchObject({
      reason: "not_recovered",
      from: { offset: 1 },
      to: { offset: 6 },
    });
    await node.publish("room:lossy", 7);
    await waitFor(() => seen.messages.length === 2, "live after the hole");
    expect(seen.offsets()).toEqual([1, 7]);
  });

  it("gap - a lost message is recovered from history", async () => {
    const { node, proxy } = await startNode();
    const lost = (f: Record<string, unknown>): boolean =>
      f.type === "message" && f.offset === 2;
    const client = newClient(proxy.url, { webSocket: lossyWebSocket(lost) });
    await client.connect();
    const subscription = client.subscribe("room:gap");
    const seen = record(subscription);
    await subscription.ready();

    for (let i = 1; i <= 3; i += 1) await node.publish("room:gap", i);
    await waitFor(() => seen.messages.length === 3, "gap filled");
    await node.publish("room:gap", 4);
    await waitFor(() => seen.messages.length === 4, "live after");

    expect(seen.offsets()).toEqual([1, 2, 3, 4]);
    expect(seen.messages.map((m) => m.data)).toEqual([1, 2, 3, 4]);
    expect(seen.holes).toEqual([]);
    expect(seen.recoveries).toMatchObject([
      { source: "history", from: { offset: 1 }, count: 2 },
    ]);
  });

  it("gap - a gap history cannot fill is a discontinuity", async () => {
    const { node, proxy } = await startNode({ historySize: 1 });
    const lost = (f: Record<string, unknown>): boolean =>
      f.type === "message" && (f.offset === 2 || f.offset === 3);
    const client = newClient(proxy.url, { webSocket: lossyWebSocket(lost) });
    await client.connect();
    const subscription = client.subscribe("room:hole");
    const seen = record(subscription);
    await subscription.ready();

    for (let i = 1; i <= 4; i += 1) await node.publish("room:hole", i);
    await waitFor(() => seen.messages.length === 2, "after the hole");
    expect(seen.offsets()).toEqual([1, 4]);
    expect(seen.holes).toMatchObject([
      { reason: "gap", from: { offset: 1 }, to: { offset: 3 } },
    ]);
  });

  it("reconnect - when the heartbeat goes unanswered", async () => {
    const { proxy } = await startNode({ heartbeat: 200, pongTimeout: 300 });
    const client = newClient(proxy.url, { connectTimeoutMs: 300 });
    const seen = disconnects(client);
    await client.connect();
    expect(client.connectResult).toMatchObject({
      heartbeat: 200,
      pongTimeout: 300,
    });

    proxy.mode = "freeze";
    await waitFor(() => seen.length === 1, "heartbeat timeout", 3_000);
    expect(seen[0]).toMatchObject({
      code: 1006,
      reason: "heartbeat timeout",
      reconnect: true,
    });
    proxy.mode = "pass";
    await waitFor(() => client.state === "connected", "reconnected");
  });

  it("reconnect - waits at least 5 s after 4429", async () => {
    const { proxy } = await startNode({
      publishRate: 1,
      publishBurst: 1,
      rateViolations: 2,
    });
    const client = newClient(proxy.url);
    const seen = disconnects(client);
    let closedAt = 0;
    client.on("disconnected", () => (closedAt = Date.now()));
    await client.connect();

    const publishes = [1, 2, 3].map((n) => client.publish("room:rate", n));
    await waitFor(() => seen.length === 1, "close 4429");
    expect(seen[0]).toMatchObject({ code: 4429, reconnect: true });
    await waitFor(() => proxy.accepted === 2, "reconnect", 8_000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(5_000);

    // Queued under their keys, each lands once on the new connection.
    const results = await Promise.all(publishes);
    const offsets = results.map((r) => r.offset).sort();
    expect(offsets).toEqual([1, 2, 3]);
  }, 20_000);

  it("close code - 4401 stops the client for good", async () => {
    const { proxy } = await startNode({ tokenSecret: SECRET });
    const client = newClient(proxy.url, { token: "not-a-jwt" });
    const seen = disconnects(client);
    const errors: Error[] = [];
    client.on("error", (e) => errors.push(e));

    const error = await client.connect().catch((e) => e);
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error).toMatchObject({
      code: "SB_ERR_UNAUTHORIZED",
      closeCode: 4401,
    });
    expect(client.state).toBe("closed");
    expect(seen).toEqual([
      { code: 4401, reason: expect.any(String), reconnect: false },
    ]);
    expect(errors).toEqual([error]);

    await sleep(500);
    expect(proxy.accepted).toBe(1);
    await expect(client.publish("room:x", 1)).rejects.toBeInstanceOf(
      ClosedError,
    );
  });

  it("token - 4419 gets a fresh token, never the old one", async () => {
    const { proxy } = await startNode({ tokenSecret: SECRET });
    const issued: string[] = [];
    const client = newClient(proxy.url, {
      token: () => {
        // The first token expired a minute ago, past the 5 s leeway.
        const expiresInS = issued.length === 0 ? -60 : 60;
        const token = grantAll(SECRET, "alice", expiresInS);
        issued.push(token);
        return token;
      },
    });
    const seen = disconnects(client);

    const result = await client.connect();
    expect(issued).toHaveLength(2);
    expect(issued[0]).not.toBe(issued[1]);
    expect(seen).toEqual([
      { code: 4419, reason: expect.any(String), reconnect: true },
    ]);
    expect(result.expiresIn).toBeGreaterThan(50_000);
    expect(proxy.accepted).toBe(2);
  });

  it("token - 4419 stops the client when the token is a string", async () => {
    const { proxy } = await startNode({ tokenSecret: SECRET });
    const client = newClient(proxy.url, {
      token: grantAll(SECRET, "bob", -60),
    });
    const error = await client.connect().catch((e) => e);
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error.closeCode).toBe(4419);
    expect(client.state).toBe("closed");
    await sleep(300);
    expect(proxy.accepted).toBe(1);
  });

  it("token - refreshes in-band before it expires", async () => {
    const { proxy } = await startNode({
      tokenSecret: SECRET,
      tokenGrace: 100,
    });
    let calls = 0;
    const client = newClient(proxy.url, {
      token: () => {
        calls += 1;
        // 6 s is past the server's 5 s leeway only for the JWT check; the
        // connection expires at exp + tokenGrace, so a refresh is needed.
        return grantAll(SECRET, "carol", calls === 1 ? 2 : 60);
      },
    });
    const seen = disconnects(client);
    const result = await client.connect();
    expect(result.expiresIn).toBeLessThanOrEqual(2_000);

    await waitFor(() => calls === 2, "refresh", 4_000);
    await sleep(1_500);
    expect(seen).toEqual([]);
    expect(proxy.accepted).toBe(1);
    expect(client.state).toBe("connected");
  });

  it("close code - 4000 stops the client, 4009 reconnects it", async () => {
    const { node, proxy } = await startNode({ tokenSecret: SECRET });
    const stays = newClient(proxy.url, {
      token: () => grantAll(SECRET, "dave", 60),
    });
    await stays.connect();
    node.disconnectUser("dave", true);
    await waitFor(() => proxy.accepted === 2, "reconnect after 4009");
    await waitFor(() => stays.state === "connected", "connected again");

    const errors: Error[] = [];
    stays.on("error", (e) => errors.push(e));
    node.disconnectUser("dave", false);
    await waitFor(() => stays.state === "closed", "stopped after 4000");
    expect(errors[0]).toBeInstanceOf(DisconnectedError);
    await sleep(300);
    expect(proxy.accepted).toBe(2);
  });

  it("subscribe - ends when the server ends it", async () => {
    const { node, proxy } = await startNode({ tokenSecret: SECRET });
    const client = newClient(proxy.url, {
      token: () => grantAll(SECRET, "erin", 60),
    });
    await client.connect();
    const subscription = client.subscribe("room:end");
    await subscription.ready();
    const ended = new Promise((resolve) =>
      subscription.on("unsubscribed", resolve),
    );

    expect(node.unsubscribeUser("erin", "room:end")).toBe(1);
    expect(await ended).toEqual({
      code: "server",
      reason: "unsubscribed by the server",
      resubscribe: false,
    });
    expect(subscription.state).toBe("unsubscribed");
    expect(client.getSubscription("room:end")).toBeUndefined();
  });

  it("subscribe - a refusal ends it with an error", async () => {
    const { proxy } = await startNode({ tokenSecret: SECRET });
    const token = signToken(SECRET, {
      sub: "frank",
      exp: Math.floor(Date.now() / 1000) + 60,
      sb: { subscribe: ["room:*"] },
    });
    const client = newClient(proxy.url, { token });
    await client.connect();
    const subscription = client.subscribe("secret:1");
    const error = await subscription.ready().catch((e) => e);
    expect(error).toBeInstanceOf(ServerError);
    expect(error.serverCode).toBe("forbidden");
    expect(subscription.state).toBe("unsubscribed");
  });

  it("requests - history and presence", async () => {
    const { node, proxy } = await startNode();
    const client = newClient(proxy.url);
    await client.connect();
    for (let i = 1; i <= 4; i += 1) await node.publish("room:hist", i);

    const history = await client.history("room:hist", { limit: 10 });
    expect(history.offset).toBe(4);
    expect(history.publications.map((p) => p.data)).toEqual([1, 2, 3, 4]);
    const since = await client.history("room:hist", {
      since: { epoch: history.epoch, offset: 2 },
      limit: 10,
    });
    expect(since.publications.map((p) => p.offset)).toEqual([3, 4]);

    const subscription = client.subscribe("room:hist");
    await subscription.ready();
    const presence = await subscription.presence();
    expect(presence.members).toEqual([
      expect.objectContaining({ client: client.connectResult?.client }),
    ]);
  });

  it("presence - keeps members from snapshots, joins, leaves", async () => {
    const { proxy } = await startNode();
    const id = (c: SwitchboardClient): string | undefined =>
      c.connectResult?.client;
    const alice = newClient(proxy.url);
    await alice.connect();
    const room = alice.subscribe("room:people", { presence: true });
    const joins: string[] = [];
    const leaves: string[] = [];
    room.on("join", (j) => joins.push(j.client));
    room.on("leave", (l) => leaves.push(l.client));
    await room.ready();
    expect(room.members.map((m) => m.client)).toEqual([id(alice)]);

    const bob = newClient(proxy.url);
    await bob.connect();
    await bob.subscribe("room:people", { presence: true }).ready();
    await waitFor(() => joins.length === 1, "join");
    expect(joins).toEqual([id(bob)]);
    expect(room.members.map((m) => m.client).sort()).toEqual(
      [id(alice), id(bob)].sort(),
    );
    const bobUser = room.members.find((m) => m.client === id(bob))?.user;
    expect(bobUser).not.toBe(
      room.members.find((m) => m.client === id(alice))?.user,
    );

    await bob.close();
    await waitFor(() => leaves.length === 1, "leave");
    expect(leaves).toEqual([id(bob)]);
    expect(room.members.map((m) => m.client)).toEqual([id(alice)]);
  });

  it("presence - a resubscribe replaces the list by the snapshot", async () => {
    const { proxy, port } = await startNode();
    const alice = newClient(proxy.url);
    await alice.connect();
    const room = alice.subscribe("room:snap", { presence: true });
    const snapshots: number[] = [];
    room.on("members", (members) => snapshots.push(members.length));
    await room.ready();

    const bob = newClient(`ws://127.0.0.1:${port}/ws`);
    await bob.connect();
    await bob.subscribe("room:snap", { presence: true }).ready();
    await waitFor(() => room.members.length === 2, "bob listed");

    proxy.mode = "refuse";
    proxy.cut();
    await waitFor(() => alice.state !== "connected", "disconnect");
    await bob.close();
    proxy.mode = "pass";
    await waitFor(() => snapshots.length === 2, "second snapshot");
    expect(room.members.map((m) => m.client)).toEqual([
      alice.connectResult?.client,
    ]);
  });

  it("reconnect - keeps the session", async () => {
    const { proxy } = await startNode();
    const client = newClient(proxy.url);
    const first = await client.connect();
    proxy.cut();
    await waitFor(() => proxy.accepted === 2, "reconnect");
    await waitFor(() => client.state === "connected", "connected");
    const second = client.connectResult;
    expect(second?.client).not.toBe(first.client);
    expect(second?.session).toBe(first.session);
    expect(first.session).toBe(client.session);
  });

  it("drain - moves to another node", async () => {
    const first = await startNode({
      nodeId: "first",
      drainDelay: 0,
      drainWindow: 100,
      drainTimeout: 2_000,
    });
    const second = createNode({ host: "127.0.0.1", port: 0, nodeId: "next" });
    const { port } = await second.listen();
    cleanups.push(() => second.close());

    const client = newClient(first.proxy.url);
    const seen = disconnects(client);
    await client.connect();
    expect(client.connectResult?.node).toBe("first");

    first.proxy.targetPort = port;
    await first.node.drain();
    await waitFor(() => client.connectResult?.node === "next", "moved");
    expect(seen[0]).toMatchObject({ code: 1001, reconnect: true });
  });

  it("close - ends subscriptions and rejects pending calls", async () => {
    const { proxy } = await startNode();
    const client = newClient(proxy.url);
    await client.connect();
    const subscription = client.subscribe("room:bye");
    await subscription.ready();
    proxy.mode = "refuse";
    proxy.cut();
    await waitFor(() => client.state !== "connected", "disconnect");

    const pending = client.publish("room:bye", 1);
    const ended = new Promise((resolve) =>
      subscription.on("unsubscribed", resolve),
    );
    await client.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
    expect(await ended).toMatchObject({ code: "closed" });
    expect(client.state).toBe("closed");
    expect(() => client.subscribe("room:again")).toThrow(ClosedError);
  });
});
