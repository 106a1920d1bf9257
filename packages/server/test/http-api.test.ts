import { request as httpRequest } from "node:http";

import { afterEach, describe, expect, it } from "vitest";

import {
  ALL_GRANTS,
  TestClient,
  anonUser,
  http,
  isMessage,
  mintToken,
  startNode,
  stopAll,
  subscribedClient,
} from "./helpers.js";

const SECRET = "http-test-secret-0123456789abcdef0123";
const API_KEY = "api-key-0123456789";

afterEach(stopAll);

function token(sub: string): Promise<string> {
  return mintToken(SECRET, { sub, sb: ALL_GRANTS });
}

/** A POST over node:http, which sends the Host header it is given. */
function rawPost(
  port: number,
  path: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: "127.0.0.1", port, path, method: "POST", headers },
      (response) => {
        let text = "";
        response.on("data", (chunk) => (text += chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: text }),
        );
      },
    );
    request.on("error", reject);
    request.end(JSON.stringify(body));
  });
}

describe("HTTP API routes", () => {
  it("publishes with POST /api/publish", async () => {
    const { port } = await startNode();
    const channel = "api:pub";
    const { client, sub } = await subscribedClient(port, channel);
    const answer = await http(port, "POST", "/api/publish", {
      body: { channel, data: { text: "hi" } },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("application/json");
    expect(answer.json).toEqual({ epoch: sub.epoch, offset: 1 });
    expect(await client.waitFor(isMessage(channel))).toEqual({
      type: "message",
      channel,
      epoch: sub.epoch,
      offset: 1,
      data: { text: "hi" },
    });
  });

  it("publishes to every channel with POST /api/broadcast", async () => {
    const { node, port } = await startNode();
    await node.publish("api:b", "earlier");
    const a = await subscribedClient(port, "api:a");
    const b = await subscribedClient(port, "api:b");
    const answer = await http(port, "POST", "/api/broadcast", {
      body: { channels: ["api:a", "api:b"], data: [1, 2] },
    });
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({
      results: [
        { channel: "api:a", epoch: a.sub.epoch, offset: 1 },
        { channel: "api:b", epoch: b.sub.epoch, offset: 2 },
      ],
    });
    expect(await a.client.waitFor(isMessage("api:a"))).toMatchObject({
      offset: 1,
      data: [1, 2],
    });
    expect(await b.client.waitFor(isMessage("api:b"))).toMatchObject({
      offset: 2,
      data: [1, 2],
    });
  });

  it("refuses a broadcast without channels with 400", async () => {
    const { port } = await startNode();
    const answer = await http(port, "POST", "/api/broadcast", {
      body: { channels: [], data: 1 },
    });
    expect(answer.status).toBe(400);
    expect(answer.json.error.code).toBe("bad_request");
  });

  it("reads history with GET /api/history", async () => {
    const { node, port } = await startNode();
    const channel = "api:hist";
    let epoch = "";
    for (let n = 1; n <= 5; n++) ({ epoch } = await node.publish(channel, n));
    const message = (offset: number) => ({
      type: "message",
      channel,
      epoch,
      offset,
      data: offset,
    });

    const position = await http(port, "GET", `/api/history?channel=${channel}`);
    expect(position.json).toEqual({ epoch, offset: 5, publications: [] });

    const newest = await http(
      port,
      "GET",
      `/api/history?channel=${channel}&limit=2&reverse=true`,
    );
    expect(newest.json.publications).toEqual([message(5), message(4)]);

    const since = await http(
      port,
      "GET",
      `/api/history?channel=${channel}&epoch=${epoch}&offset=3&limit=10`,
    );
    expect(since.json.publications).toEqual([message(4), message(5)]);

    const half = await http(
      port,
      "GET",
      `/api/history?channel=${channel}&epoch=${epoch}`,
    );
    expect(half.status).toBe(400);
    expect(half.json.error.message).toBe("epoch and offset go together");

    const tooMany = await http(
      port,
      "GET",
      `/api/history?channel=${channel}&limit=301`,
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error.code).toBe("bad_request");
  });

  it("lists members with GET /api/presence", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const member = await subscribedClient(port, "api:room", {
      token: await token("alice"),
    });
    const answer = await http(port, "GET", "/api/presence?channel=api:room");
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({
      members: [{ user: "alice", client: member.id }],
    });
  });

  it("lists channels and subscribers with GET /api/channels", async () => {
    const { node, port } = await startNode();
    await node.publish("api:stored", 1);
    await subscribedClient(port, "api:live");
    await subscribedClient(port, "api:live");
    const answer = await http(port, "GET", "/api/channels");
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({
      channels: [
        { channel: "api:live", subscribers: 2 },
        { channel: "api:stored", subscribers: 0 },
      ],
    });
  });

  it("disconnects a user's connections with 4000", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const bobToken = await token("bob");
    const one = await TestClient.connect(port, { token: bobToken });
    const two = await TestClient.connect(port, { token: bobToken });
    const other = await TestClient.connect(port, {
      token: await token("carol"),
    });
    const answer = await http(port, "POST", "/api/disconnect", {
      body: { user: "bob" },
    });
    expect(answer.json).toEqual({ disconnected: 2 });
    expect(await one.waitForClose()).toEqual({
      code: 4000,
      reason: "disconnected by the server",
    });
    expect((await two.waitForClose()).code).toBe(4000);
    expect((await other.request("ping")).type).toBe("ok");
  });

  it("disconnects with 4009 when reconnect is true", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const bob = await TestClient.connect(port, { token: await token("bob") });
    const answer = await http(port, "POST", "/api/disconnect", {
      body: { user: "bob", reconnect: true },
    });
    expect(answer.json).toEqual({ disconnected: 1 });
    expect((await bob.waitForClose()).code).toBe(4009);
  });

  it("disconnects an anonymous client by its presence user key", async () => {
    const { port } = await startNode();
    const guest = await TestClient.connect(port, { session: "guest-session" });
    const other = await TestClient.connect(port, { session: "other-session" });
    const answer = await http(port, "POST", "/api/disconnect", {
      body: { user: anonUser("guest-session") },
    });
    expect(answer.json).toEqual({ disconnected: 1 });
    expect((await guest.waitForClose()).code).toBe(4000);
    expect((await other.request("ping")).type).toBe("ok");
  });

  it("refuses a disconnect without a user with 400", async () => {
    const { port } = await startNode();
    const answer = await http(port, "POST", "/api/disconnect", {
      body: { reconnect: true },
    });
    expect(answer.status).toBe(400);
    expect(answer.json.error.code).toBe("bad_request");
  });

  it("ends a user's subscription with an unsubscribed push", async () => {
    const { node, port } = await startNode({ tokenSecret: SECRET });
    const bob = await subscribedClient(port, "api:x", {
      token: await token("bob"),
    });
    await bob.client.subscribe("api:y");
    const answer = await http(port, "POST", "/api/unsubscribe", {
      body: { user: "bob", channel: "api:x" },
    });
    expect(answer.json).toEqual({ unsubscribed: 1 });
    const push = await bob.client.waitFor((f) => f.type === "unsubscribed");
    expect(push).toEqual({
      type: "unsubscribed",
      channel: "api:x",
      code: "server",
      reason: "unsubscribed by the server",
      resubscribe: false,
    });

    await node.publish("api:x", "after");
    const marker = await node.publish("api:y", "marker");
    await bob.client.waitFor(
      (f) => isMessage("api:y")(f) && f.offset === marker.offset,
    );
    expect(bob.client.messages("api:x")).toEqual([]);
  });

  it("answers /healthz, /readyz and /metrics", async () => {
    const { port } = await startNode();
    await TestClient.connect(port);
    const health = await http(port, "GET", "/healthz");
    expect([health.status, health.json]).toEqual([200, { status: "ok" }]);
    const ready = await http(port, "GET", "/readyz");
    expect([ready.status, ready.json]).toEqual([200, { status: "ready" }]);
    const metrics = await http(port, "GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^switchboard_connections 1$/m);
  });

  it("answers 404 for an unknown API route", async () => {
    const { port } = await startNode();
    const answer = await http(port, "GET", "/api/nothing");
    expect(answer.status).toBe(404);
    expect(answer.json.error.code).toBe("not_found");
    const wrongMethod = await http(port, "GET", "/api/publish");
    expect(wrongMethod.status).toBe(404);
  });
});

describe("HTTP API key", () => {
  it("answers 401 with a JSON error without the key", async () => {
    const { port } = await startNode({ apiKey: API_KEY });
    const answer = await http(port, "POST", "/api/publish", {
      body: { channel: "k:1", data: 1 },
    });
    expect(answer.status).toBe(401);
    expect(answer.headers.get("content-type")).toBe("application/json");
    expect(answer.json).toEqual({
      error: { code: "unauthorized", message: "missing or wrong API key" },
    });
  });

  it("answers 401 with a wrong key", async () => {
    const { port } = await startNode({ apiKey: API_KEY });
    for (const authorization of [
      `Bearer ${API_KEY}x`,
      `Bearer ${API_KEY.slice(0, -1)}`,
      API_KEY,
      `Basic ${API_KEY}`,
    ]) {
      const answer = await http(port, "GET", "/api/channels", {
        headers: { authorization },
      });
      expect(answer.status).toBe(401);
      expect(answer.json.error.code).toBe("unauthorized");
    }
  });

  it("serves every route with the right key", async () => {
    const { port } = await startNode({ apiKey: API_KEY });
    const headers = { authorization: `Bearer ${API_KEY}` };
    const published = await http(port, "POST", "/api/publish", {
      body: { channel: "k:1", data: 1 },
      headers,
    });
    expect(published.status).toBe(200);
    expect(published.json).toMatchObject({ offset: 1 });
    const channels = await http(port, "GET", "/api/channels", { headers });
    expect(channels.json).toEqual({
      channels: [{ channel: "k:1", subscribers: 0 }],
    });
  });

  it("serves /readyz and /metrics to loopback without the key", async () => {
    const { port } = await startNode({ apiKey: API_KEY });
    expect((await http(port, "GET", "/readyz")).status).toBe(200);
    expect((await http(port, "GET", "/metrics")).status).toBe(200);
  });

  it("serves loopback clients without a key configured", async () => {
    const { port } = await startNode();
    const answer = await http(port, "POST", "/api/publish", {
      body: { channel: "k:open", data: 1 },
    });
    expect(answer.status).toBe(200);
  });

  it.each([
    ["a browser Origin", { origin: "http://page.example" }],
    ["a rebound Host name", { host: "rebound.example" }],
  ])("answers 401 without a key to %s", async (_what, headers) => {
    const { port } = await startNode();
    const answer = await rawPost(port, "/api/publish", headers, {
      channel: "k:browser",
      data: 1,
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).error.code).toBe("unauthorized");
    const local = await rawPost(
      port,
      "/api/publish",
      {},
      {
        channel: "k:browser",
        data: 2,
      },
    );
    expect(local.status).toBe(200);
  });

  it("answers 401 to a non-loopback client via a proxy", async () => {
    const { port } = await startNode({ trustProxy: ["127.0.0.1"] });
    const headers = { "x-forwarded-for": "203.0.113.7" };
    const publish = await http(port, "POST", "/api/publish", {
      body: { channel: "k:proxied", data: 1 },
      headers,
    });
    expect(publish.status).toBe(401);
    expect(publish.json.error.code).toBe("unauthorized");
    expect((await http(port, "GET", "/metrics", { headers })).status).toBe(401);
    expect((await http(port, "GET", "/readyz", { headers })).status).toBe(401);
    const local = await http(port, "POST", "/api/publish", {
      body: { channel: "k:proxied", data: 1 },
      headers: { "x-forwarded-for": "127.0.0.1" },
    });
    expect(local.status).toBe(200);
  });

  it("serves a proxied client with the right key", async () => {
    const { port } = await startNode({
      apiKey: API_KEY,
      trustProxy: ["127.0.0.1"],
    });
    const answer = await http(port, "GET", "/metrics", {
      headers: {
        "x-forwarded-for": "203.0.113.7",
        authorization: `Bearer ${API_KEY}`,
      },
    });
    expect(answer.status).toBe(200);
  });
});

describe("HTTP API input", () => {
  it("takes an Idempotency-Key header", async () => {
    const { port } = await startNode();
    const send = (data: number) =>
      http(port, "POST", "/api/publish", {
        body: { channel: "in:idem", data },
        headers: { "idempotency-key": "req-42" },
      });
    const first = await send(1);
    const second = await send(2);
    expect(first.json).toEqual({ epoch: first.json.epoch, offset: 1 });
    expect(second.json).toEqual({
      epoch: first.json.epoch,
      offset: 1,
      duplicate: true,
    });
    const history = await http(
      port,
      "GET",
      "/api/history?channel=in:idem&limit=10",
    );
    expect(history.json.offset).toBe(1);
    expect(history.json.publications).toHaveLength(1);
  });

  it("takes key in the body over the header", async () => {
    const { port } = await startNode();
    await http(port, "POST", "/api/publish", {
      body: { channel: "in:key", data: 1, key: "body-key" },
    });
    const again = await http(port, "POST", "/api/publish", {
      body: { channel: "in:key", data: 1, key: "body-key" },
      headers: { "idempotency-key": "other" },
    });
    expect(again.json).toMatchObject({ offset: 1, duplicate: true });
  });

  it("refuses a malformed idempotency key with 400", async () => {
    const { port } = await startNode();
    const answer = await http(port, "POST", "/api/publish", {
      body: { channel: "in:key", data: 1 },
      headers: { "idempotency-key": "no spaces" },
    });
    expect(answer.status).toBe(400);
  });

  it("answers 413 to a body over the limit", async () => {
    const { port } = await startNode({
      maxMessageSize: 1000,
      frameLimit: 1100,
    });
    const answer = await http(port, "POST", "/api/publish", {
      raw: JSON.stringify({ channel: "in:big", data: "x".repeat(2000) }),
    });
    expect(answer.status).toBe(413);
    expect(answer.json.error.code).toBe("too_large");
  });

  it("answers 413 to a chunked body over the limit", async () => {
    const { port } = await startNode({
      maxMessageSize: 1000,
      frameLimit: 1100,
    });
    const text = JSON.stringify({ channel: "in:big", data: "x".repeat(5000) });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text));
        controller.close();
      },
    });
    const response = await fetch(`http://127.0.0.1:${port}/api/publish`, {
      method: "POST",
      body,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
  });

  it("answers 413 to data over maxMessageSize", async () => {
    const { port } = await startNode({
      maxMessageSize: 1000,
      frameLimit: 1100,
    });
    const answer = await http(port, "POST", "/api/publish", {
      body: { channel: "in:big", data: "x".repeat(1000) },
    });
    expect(answer.status).toBe(413);
    expect(answer.json.error.code).toBe("too_large");
    const fits = await http(port, "POST", "/api/publish", {
      body: { channel: "in:big", data: "x".repeat(998) },
    });
    expect(fits.status).toBe(200);
  });

  it("answers 400 to a body that is not JSON", async () => {
    const { port } = await startNode();
    for (const [raw, message] of [
      ["{not json", "body is not valid JSON"],
      ['{"user":"a"', "body is not valid JSON"],
      ["", "body is not valid JSON"],
      ["[1,2]", "body must be a JSON object"],
      ["null", "body must be a JSON object"],
    ]) {
      const answer = await http(port, "POST", "/api/publish", { raw });
      expect(answer.status).toBe(400);
      expect(answer.json.error).toEqual({ code: "bad_request", message });
    }
  });

  it("answers 400 to an invalid channel or missing data", async () => {
    const { port } = await startNode();
    const badChannel = await http(port, "POST", "/api/publish", {
      body: { channel: "bad channel", data: 1 },
    });
    expect(badChannel.status).toBe(400);
    const noData = await http(port, "POST", "/api/publish", {
      body: { channel: "in:ok" },
    });
    expect(noData.status).toBe(400);
    expect(noData.json.error.message).toBe("data is required");
  });
});
