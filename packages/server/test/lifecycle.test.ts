import { Agent, request as httpRequest, type IncomingMessage } from "node:http";

import { afterEach, describe, expect, it } from "vitest";

import {
  RawClient,
  SUBPROTOCOL,
  TestClient,
  http,
  mintToken,
  rawUpgrade,
  sleep,
  startNode,
  stopAll,
  waitUntil,
  within,
  type ServerFrame,
} from "./helpers.js";

afterEach(stopAll);

describe("heartbeat", () => {
  it("terminates a peer that does not answer pings", async () => {
    const heartbeat = 100;
    const pongTimeout = 150;
    const { port } = await startNode({ heartbeat, pongTimeout });
    const started = Date.now();
    const deaf = await TestClient.connect(port, {}, { autoPong: false });
    const alive = await TestClient.connect(port);

    const closed = await deaf.waitForClose(3_000);
    const elapsed = Date.now() - started;
    expect(closed.code).toBe(1006);
    expect(deaf.pings).toBeGreaterThanOrEqual(1);
    expect(elapsed).toBeGreaterThanOrEqual(heartbeat + pongTimeout);
    expect(elapsed).toBeLessThan(heartbeat + pongTimeout + 1_500);

    await waitUntil(() => alive.pings >= 3, 3_000, "three pings");
    expect(alive.closedWith).toBeUndefined();
    expect((await alive.request("ping")).type).toBe("ok");
  });

  it("reports heartbeat and pongTimeout in the connect result", async () => {
    const { port } = await startNode({ heartbeat: 1234, pongTimeout: 567 });
    const { connectResult } = await TestClient.connect(port);
    expect(connectResult).toMatchObject({ heartbeat: 1234, pongTimeout: 567 });
  });
});

describe("connect timeout", () => {
  it("closes 4408 when no connect arrives in time", async () => {
    const { port } = await startNode({ connectTimeout: 100 });
    const connected = await TestClient.connect(port);
    const silent = await TestClient.open(port);
    expect(await silent.waitForClose(2_000)).toEqual({
      code: 4408,
      reason: "no connect in time",
    });
    expect(connected.closedWith).toBeUndefined();
    expect((await connected.request("ping")).type).toBe("ok");
  });

  it("closes 4400 on a request before connect", async () => {
    const { port } = await startNode();
    const client = await TestClient.open(port);
    client.send({ type: "ping", id: 1 });
    expect((await client.waitForClose()).code).toBe(4400);
  });
});

describe("publish rate limit", () => {
  it("answers rate_limited after the burst, then closes 4429", async () => {
    const { port } = await startNode({
      publishRate: 1,
      publishBurst: 3,
      rateViolations: 3,
    });
    const client = await TestClient.connect(port);
    const answered: ServerFrame[] = [];
    for (let i = 0; i < 6; i++) {
      answered.push(
        await client.request("publish", { channel: "rate:1", data: i }),
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
    expect(await client.waitForClose()).toEqual({
      code: 4429,
      reason: "publish rate exceeded",
    });
    expect(client.frames.find((f) => f.id === 99)).toMatchObject({
      type: "error",
      code: "rate_limited",
    });
  });

  it("allows publishing again once tokens refill", async () => {
    const { port } = await startNode({ publishRate: 20, publishBurst: 1 });
    const client = await TestClient.connect(port);
    const publish = () =>
      client.request("publish", { channel: "rate:2", data: 1 });
    expect((await publish()).type).toBe("ok");
    const limited = await publish();
    expect(limited.code).toBe("rate_limited");
    await sleep((limited.retryAfter as number) + 5);
    expect((await publish()).type).toBe("ok");
  });
});

describe("upgrade admission", () => {
  it("answers 503 with Retry-After at maxConnections", async () => {
    const { node, port } = await startNode({ maxConnections: 2 });
    const first = await TestClient.open(port);
    await TestClient.open(port);
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
    const { port } = await startNode({
      allowedOrigins: ["https://app.example"],
    });
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
    const { port } = await startNode();
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
    const { port } = await startNode();
    const client = await TestClient.open(port, { protocols: [] });
    expect(client.ws.protocol).toBe("");
    expect(await client.call("connect")).toMatchObject({
      protocol: 1,
    });
  });

  it("answers 429 past maxConnectionsPerIp", async () => {
    const { node, port } = await startNode({ maxConnectionsPerIp: 2 });
    const first = await TestClient.open(port);
    await TestClient.open(port);
    const refused = await rawUpgrade(port);
    expect(refused.status).toBe(429);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(JSON.parse(refused.body).error.code).toBe("per_ip");

    await first.close();
    await waitUntil(() => node.connectionCount === 1);
    const again = await TestClient.open(port);
    expect(again.ws.readyState).toBe(again.ws.OPEN);
  });

  it("counts per forwarded address behind a trusted proxy", async () => {
    const { port } = await startNode({
      maxConnectionsPerIp: 1,
      trustProxy: ["127.0.0.1"],
    });
    const from = (address: string) => ({
      headers: { "X-Forwarded-For": address },
    });
    await TestClient.open(port, from("203.0.113.1"));
    expect((await rawUpgrade(port, from("203.0.113.1"))).status).toBe(429);
    await TestClient.open(port, from("203.0.113.2"));
    expect((await rawUpgrade(port, from("203.0.113.3"))).status).toBe(101);
  });

  it("does not count failed handshakes per address", async () => {
    const { port } = await startNode({ maxConnectionsPerIp: 2 });
    for (let i = 0; i < 3; i++) {
      const bad = await rawUpgrade(port, {
        headers: { "Sec-WebSocket-Key": "not-a-valid-key" },
      });
      expect(bad.status).toBe(400);
    }
    await TestClient.open(port);
    const second = await TestClient.open(port);
    expect(second.ws.readyState).toBe(second.ws.OPEN);
  });

  it("answers 426 to a plain request on the WebSocket path", async () => {
    const { port } = await startNode();
    const plain = await http(port, "GET", "/ws?x=1");
    expect(plain.status).toBe(426);
    expect(plain.headers.get("upgrade")).toBe("websocket");
    expect(plain.json.error.code).toBe("upgrade_required");
  });

  it("answers 404 to an upgrade or request on an unknown path", async () => {
    const { port } = await startNode();
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
    const { node, port } = await startNode({
      drainDelay,
      drainWindow,
      drainTimeout,
    });
    const clients: TestClient[] = [];
    for (let i = 0; i < 8; i++) clients.push(await TestClient.connect(port));

    const started = Date.now();
    const drained = node.drain();
    const ready = await http(port, "GET", "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.json).toEqual({
      status: "not_ready",
      reason: "draining",
      since: expect.any(Number),
    });
    const upgrade = await rawUpgrade(port);
    expect(upgrade.status).toBe(503);
    expect(upgrade.headers["retry-after"]).toBe("5");
    expect(Date.now() - started).toBeLessThan(drainDelay);

    const timings = await Promise.all(
      clients.map(async (client) => {
        const push = await client.waitFor((f) => f.type === "reconnect", 2_000);
        const pushedAt = Date.now();
        const closed = await client.waitForClose(2_000);
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

    await within(drained, drainTimeout, "drain");
    expect(Date.now() - started).toBeLessThan(drainTimeout);
    expect(node.connectionCount).toBe(0);
    // The listener closed after drainDelay.
    await expect(rawUpgrade(port)).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
  });

  it("resolves within drainTimeout when a peer ignores the close", async () => {
    const drainTimeout = 600;
    const { node, port } = await startNode({
      drainDelay: 50,
      drainWindow: 100,
      drainTimeout,
    });
    // A peer that never answers the close.
    const stubborn = await RawClient.open(port);
    await waitUntil(() => node.connectionCount === 1);

    const started = Date.now();
    await within(node.drain(), drainTimeout + 500, "drain");
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(drainTimeout - 5);
    expect(elapsed).toBeLessThan(drainTimeout + 300);
    await within(stubborn.ended, 1_000, "socket end");
    await waitUntil(() => node.connectionCount === 0, 1_000);
  });
});

describe("drain of HTTP keep-alive connections", () => {
  it("closes keep-alive connections that outlive the listener", async () => {
    const { node, port } = await startNode({
      drainDelay: 100,
      drainWindow: 300,
      drainTimeout: 1_000,
    });
    // A WebSocket keeps the drain going after the listener closes.
    await TestClient.connect(port);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<IncomingMessage>((resolve, reject) => {
        const call = httpRequest(
          { host: "127.0.0.1", port, path, agent },
          (response) => {
            response.resume();
            response.on("end", () => resolve(response));
          },
        );
        call.on("error", reject);
        call.end();
      });

    // A request whose body is still arriving when the listener closes,
    // as one from a proxy's upstream pool would be under load.
    const drained = node.drain();
    const body = JSON.stringify({ channel: "drain:keepalive", data: 1 });
    const answer = await new Promise<IncomingMessage>((resolve, reject) => {
      const call = httpRequest(
        {
          host: "127.0.0.1",
          port,
          path: "/api/publish",
          method: "POST",
          agent,
          headers: {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(body),
          },
        },
        (response) => {
          response.resume();
          response.on("end", () => resolve(response));
        },
      );
      call.on("error", reject);
      call.write(body.slice(0, 5));
      setTimeout(() => call.end(body.slice(5)), 250);
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers.connection).toBe("close");

    await within(drained, 2_000, "drain");
    // Nothing answers after the drain: the kept-alive socket is gone.
    await expect(get("/healthz")).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
    agent.destroy();
  });
});

describe("close codes", () => {
  it("never closes with 1000", async () => {
    const secret = "lifecycle-secret-0123456789abcdef01";
    const { node, port } = await startNode({
      connectTimeout: 200,
      tokenSecret: secret,
      namespaces: { open: { anonymousSubscribe: true } },
    });
    const bobToken = await mintToken(secret, { sub: "bob" });
    const codes: Promise<number>[] = [];
    const track = (client: TestClient) =>
      codes.push(client.closed.then((c) => c.code));

    const silent = await TestClient.open(port);
    track(silent);
    const early = await TestClient.open(port);
    track(early);
    early.send({ type: "subscribe", id: 1, channel: "open:x" });
    const garbage = await TestClient.open(port);
    track(garbage);
    garbage.sendRaw("not json");
    const binary = await TestClient.open(port);
    track(binary);
    binary.sendRaw(Buffer.from([1, 2, 3]));
    const badToken = await TestClient.open(port);
    track(badToken);
    badToken.send({ type: "connect", id: 1, token: "x.y.z" });
    const bob = await TestClient.connect(port, { token: bobToken });
    track(bob);
    const draining = await TestClient.connect(port);
    track(draining);

    await http(port, "POST", "/api/disconnect", { body: { user: "bob" } });
    await within(Promise.all(codes.slice(0, 6)), 3_000, "closes");
    await waitUntil(() => node.connectionCount === 1);
    await node.close();

    const seen = await within(Promise.all(codes), 3_000, "closes");
    expect(seen).toEqual([4408, 4400, 4400, 1003, 4401, 4000, 1001]);
    expect(seen).not.toContain(1000);
  });
});
