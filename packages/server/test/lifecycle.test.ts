import { randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";

import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";

import {
  createNode,
  type NodeOptions,
  type SwitchboardNode,
} from "../src/index.js";
import {
  SUBPROTOCOL,
  connectClient,
  http,
  openClient,
  rawUpgrade,
  terminateAll,
  waitUntil,
  withTimeout,
  type Frame,
  type TestClient,
} from "./client-helpers.js";

let node: SwitchboardNode | undefined;
const sockets: Socket[] = [];

async function start(options: NodeOptions = {}) {
  node = createNode({ port: 0, ...options });
  const { port } = await node.listen();
  return { node, port };
}

afterEach(async () => {
  terminateAll();
  for (const socket of sockets.splice(0)) socket.destroy();
  await node?.close();
  node = undefined;
});

/**
 * Completes a WebSocket handshake on a plain TCP socket and then never
 * reads, writes or answers anything: a peer that does not cooperate.
 */
function stubbornSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, "127.0.0.1");
    sockets.push(socket);
    let head = "";
    socket.setEncoding("latin1");
    socket.on("error", () => undefined);
    socket.on("data", function onData(chunk: string) {
      head += chunk;
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      if (head.startsWith("HTTP/1.1 101")) resolve(socket);
      else reject(new Error(head.split("\r\n")[0]));
    });
    socket.write(
      [
        "GET /ws HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
        `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
        "",
        "",
      ].join("\r\n"),
    );
  });
}

describe("heartbeat", () => {
  it("terminates a peer that does not answer pings", async () => {
    const heartbeat = 100;
    const pongTimeout = 150;
    const { port } = await start({ heartbeat, pongTimeout });
    const started = Date.now();
    const { client: deaf } = await connectClient(port, { autoPong: false });
    const { client: alive } = await connectClient(port);

    const closed = await deaf.waitClosed(3_000);
    const elapsed = Date.now() - started;
    expect(closed.code).toBe(1006);
    expect(deaf.pings).toBeGreaterThanOrEqual(1);
    expect(elapsed).toBeGreaterThanOrEqual(heartbeat + pongTimeout);
    expect(elapsed).toBeLessThan(heartbeat + pongTimeout + 1_500);

    await waitUntil(() => alive.pings >= 3, 3_000, "three pings");
    expect(alive.closedWith).toBeUndefined();
    expect((await alive.request({ type: "ping" })).type).toBe("ok");
  });

  it("reports heartbeat and pongTimeout in the connect result", async () => {
    const { port } = await start({ heartbeat: 1234, pongTimeout: 567 });
    const { result } = await connectClient(port);
    expect(result).toMatchObject({ heartbeat: 1234, pongTimeout: 567 });
  });
});

describe("connect timeout", () => {
  it("closes 4408 when no connect arrives in time", async () => {
    const { port } = await start({ connectTimeout: 100 });
    const { client: connected } = await connectClient(port);
    const silent = await openClient(port);
    expect(await silent.waitClosed(2_000)).toEqual({
      code: 4408,
      reason: "no connect in time",
    });
    expect(connected.closedWith).toBeUndefined();
    expect((await connected.request({ type: "ping" })).type).toBe("ok");
  });

  it("closes 4400 on a request before connect", async () => {
    const { port } = await start();
    const client = await openClient(port);
    client.send({ type: "ping", id: 1 });
    expect((await client.waitClosed()).code).toBe(4400);
  });
});

describe("publish rate limit", () => {
  it("answers rate_limited after the burst, then closes 4429", async () => {
    const { port } = await start({
      publishRate: 1,
      publishBurst: 3,
      rateViolations: 3,
    });
    const { client } = await connectClient(port);
    const answered: Frame[] = [];
    for (let i = 0; i < 6; i++) {
      answered.push(
        await client.request({ type: "publish", channel: "rate:1", data: i }),
      );
    }
    expect(answered.slice(0, 3).map((r) => r.type)).toEqual(["ok", "ok", "ok"]);
    for (const reply of answered.slice(3)) {
      expect(reply).toMatchObject({
        type: "error",
        code: "rate_limited",
        temporary: true,
      });
      expect(reply.retryAfter).toBeGreaterThan(0);
      expect(reply.retryAfter).toBeLessThanOrEqual(1000);
    }
    expect(client.closedWith).toBeUndefined();

    client.send({ type: "publish", id: 99, channel: "rate:1", data: 7 });
    expect(await client.waitClosed()).toEqual({
      code: 4429,
      reason: "publish rate exceeded",
    });
    expect(client.frames.find((f) => f.id === 99)).toMatchObject({
      type: "error",
      code: "rate_limited",
    });
  });

  it("allows publishing again once tokens refill", async () => {
    const { port } = await start({ publishRate: 20, publishBurst: 1 });
    const { client } = await connectClient(port);
    const publish = () =>
      client.request({ type: "publish", channel: "rate:2", data: 1 });
    expect((await publish()).type).toBe("ok");
    const limited = await publish();
    expect(limited.code).toBe("rate_limited");
    await new Promise((resolve) =>
      setTimeout(resolve, (limited.retryAfter as number) + 5),
    );
    expect((await publish()).type).toBe("ok");
  });
});

describe("upgrade admission", () => {
  it("answers 503 with Retry-After at maxConnections", async () => {
    const { node, port } = await start({ maxConnections: 2 });
    const first = await openClient(port);
    await openClient(port);
    const refused = await rawUpgrade(port, {
      headers: { "Sec-WebSocket-Protocol": SUBPROTOCOL },
    });
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(JSON.parse(refused.body)).toEqual({
      error: {
        code: "max_connections",
        message: "node is at its connection limit",
      },
    });

    await first.close();
    await waitUntil(() => node.connectionCount === 1);
    expect((await rawUpgrade(port)).status).toBe(101);
  });

  it("answers 403 to an Origin not allowed", async () => {
    const { port } = await start({ allowedOrigins: ["https://app.example"] });
    const evil = await rawUpgrade(port, {
      headers: { Origin: "https://evil.example" },
    });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body).error.code).toBe("origin");
    const prefixed = await rawUpgrade(port, {
      headers: { Origin: "https://app.example.evil" },
    });
    expect(prefixed.status).toBe(403);
    expect((await rawUpgrade(port)).status).toBe(403);
    const good = await rawUpgrade(port, {
      headers: { Origin: "https://app.example" },
    });
    expect(good.status).toBe(101);
  });

  it("answers 400 naming switchboard.v1 to unknown subprotocols", async () => {
    const { port } = await start();
    const refused = await rawUpgrade(port, {
      headers: { "Sec-WebSocket-Protocol": "other.v2, mqtt" },
    });
    expect(refused.status).toBe(400);
    expect(refused.headers["sec-websocket-protocol"]).toBe(SUBPROTOCOL);
    expect(JSON.parse(refused.body).error).toEqual({
      code: "subprotocol",
      message: "unsupported subprotocol; supported: switchboard.v1",
    });

    const mixed = await rawUpgrade(port, {
      headers: { "Sec-WebSocket-Protocol": `other.v2, ${SUBPROTOCOL}` },
    });
    expect(mixed.status).toBe(101);
    expect(mixed.headers["sec-websocket-protocol"]).toBe(SUBPROTOCOL);

    const none = await rawUpgrade(port);
    expect(none.status).toBe(101);
    expect(none.headers["sec-websocket-protocol"]).toBeUndefined();
  });

  it("treats an upgrade without a subprotocol as v1", async () => {
    const { port } = await start();
    const client = await openClient(port, { protocols: [] });
    expect(client.ws.protocol).toBe("");
    expect(await client.call({ type: "connect" })).toMatchObject({
      protocol: 1,
    });
  });

  it("answers 429 past maxConnectionsPerIp", async () => {
    const { node, port } = await start({ maxConnectionsPerIp: 2 });
    const first = await openClient(port);
    await openClient(port);
    const refused = await rawUpgrade(port);
    expect(refused.status).toBe(429);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(JSON.parse(refused.body).error.code).toBe("per_ip");

    await first.close();
    await waitUntil(() => node.connectionCount === 1);
    const again = await openClient(port);
    expect(again.ws.readyState).toBe(again.ws.OPEN);
  });

  it("counts per forwarded address behind a trusted proxy", async () => {
    const { port } = await start({
      maxConnectionsPerIp: 1,
      trustProxy: ["127.0.0.1"],
    });
    const from = (address: string) => ({
      headers: { "X-Forwarded-For": address },
    });
    await openClient(port, from("203.0.113.1"));
    expect((await rawUpgrade(port, from("203.0.113.1"))).status).toBe(429);
    await openClient(port, from("203.0.113.2"));
    expect((await rawUpgrade(port, from("203.0.113.3"))).status).toBe(101);
  });

  it("does not count failed handshakes per address", async () => {
    const { port } = await start({ maxConnectionsPerIp: 2 });
    for (let i = 0; i < 3; i++) {
      const bad = await rawUpgrade(port, {
        headers: { "Sec-WebSocket-Key": "not-a-valid-key" },
      });
      expect(bad.status).toBe(400);
    }
    await openClient(port);
    const second = await openClient(port);
    expect(second.ws.readyState).toBe(second.ws.OPEN);
  });

  it("answers 404 to an upgrade or request on an unknown path", async () => {
    const { port } = await start();
    const upgrade = await rawUpgrade(port, { path: "/socket" });
    expect(upgrade.status).toBe(404);
    expect(JSON.parse(upgrade.body).error.code).toBe("not_found");
    const request = await http(port, "GET", "/nothing-here");
    expect(request.status).toBe(404);
    expect(request.json).toEqual({
      error: { code: "not_found", message: "not found" },
    });
  });
});

describe("drain", () => {
  it("turns not ready, advises reconnect, closes 1001", async () => {
    const drainDelay = 300;
    const drainWindow = 300;
    const drainTimeout = 3_000;
    const { node, port } = await start({
      drainDelay,
      drainWindow,
      drainTimeout,
    });
    const clients: TestClient[] = [];
    for (let i = 0; i < 8; i++)
      clients.push((await connectClient(port)).client);

    const started = Date.now();
    const drained = node.drain();
    const ready = await http(port, "GET", "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.json).toEqual({ status: "not_ready", reason: "draining" });
    const upgrade = await rawUpgrade(port);
    expect(upgrade.status).toBe(503);
    expect(upgrade.headers["retry-after"]).toBe("5");
    expect(Date.now() - started).toBeLessThan(drainDelay);

    const timings = await Promise.all(
      clients.map(async (client) => {
        const push = await client.waitFor((f) => f.type === "reconnect", 2_000);
        const pushedAt = Date.now();
        const closed = await client.waitClosed(2_000);
        return { push, pushedAt, closed, closedAt: Date.now() };
      }),
    );
    for (const { push, pushedAt, closed, closedAt } of timings) {
      expect(push).toEqual({
        type: "reconnect",
        after: push.after,
        reason: "node draining",
      });
      expect(Number.isInteger(push.after)).toBe(true);
      expect(push.after).toBeGreaterThanOrEqual(0);
      expect(push.after).toBeLessThan(drainWindow);
      expect(pushedAt - started).toBeGreaterThanOrEqual(drainDelay - 5);
      expect(closed).toEqual({ code: 1001, reason: "node draining" });
      expect(closedAt - pushedAt).toBeGreaterThanOrEqual(
        (push.after as number) - 50,
      );
    }

    await withTimeout(drained, drainTimeout, "drain");
    expect(Date.now() - started).toBeLessThan(drainTimeout);
    expect(node.connectionCount).toBe(0);
    // The listener closed after drainDelay.
    await expect(rawUpgrade(port)).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
  });

  it("resolves within drainTimeout when a peer ignores the close", async () => {
    const drainTimeout = 600;
    const { node, port } = await start({
      drainDelay: 50,
      drainWindow: 100,
      drainTimeout,
    });
    const stubborn = await stubbornSocket(port);
    const gone = new Promise((resolve) => stubborn.once("close", resolve));
    await waitUntil(() => node.connectionCount === 1);

    const started = Date.now();
    await withTimeout(node.drain(), drainTimeout + 500, "drain");
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(drainTimeout - 5);
    expect(elapsed).toBeLessThan(drainTimeout + 300);
    await withTimeout(gone, 1_000, "socket end");
    await waitUntil(() => node.connectionCount === 0, 1_000);
  });
});

describe("close codes", () => {
  it("never closes with 1000", async () => {
    const secret = "lifecycle-secret-0123456789abcdef01";
    const { node, port } = await start({
      connectTimeout: 200,
      tokenSecret: secret,
      namespaces: { open: { anonymousSubscribe: true } },
    });
    const bobToken = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("bob")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
    const codes: Promise<number>[] = [];
    const track = (client: TestClient) =>
      codes.push(client.closed.then((c) => c.code));

    const silent = await openClient(port);
    track(silent);
    const early = await openClient(port);
    track(early);
    early.send({ type: "subscribe", id: 1, channel: "open:x" });
    const garbage = await openClient(port);
    track(garbage);
    garbage.ws.send("not json");
    const binary = await openClient(port);
    track(binary);
    binary.ws.send(Buffer.from([1, 2, 3]));
    const badToken = await openClient(port);
    track(badToken);
    badToken.send({ type: "connect", id: 1, token: "x.y.z" });
    const bob = await connectClient(port, { token: bobToken });
    track(bob.client);
    const draining = await connectClient(port);
    track(draining.client);

    await http(port, "POST", "/api/disconnect", { body: { user: "bob" } });
    await withTimeout(Promise.all(codes.slice(0, 6)), 3_000, "closes");
    await waitUntil(() => node.connectionCount === 1);
    await node.close();

    const seen = await withTimeout(Promise.all(codes), 3_000, "closes");
    expect(seen).toEqual([4408, 4400, 4400, 1003, 4401, 4000, 1001]);
    expect(seen).not.toContain(1000);
  });
});
