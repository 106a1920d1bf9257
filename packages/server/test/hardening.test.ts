import { connect as netConnect } from "node:net";

import { afterEach, describe, expect, it } from "vitest";

import { createNode, resolveOptions } from "../src/index.js";
import {
  Opcode,
  RawClient,
  TestClient,
  encodeFrame,
  http,
  startNode,
  stopAll,
  subscribedClient,
  waitUntil,
} from "./helpers.js";

afterEach(stopAll);

/** `[[[...]]]` nested `depth` deep: small on the wire, deep to walk. */
function nested(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

/** Asserts the node still answers another client at once. */
async function stillServing(port: number): Promise<void> {
  const witness = await TestClient.connect(port);
  expect((await witness.request("ping", {}, 1_000)).type).toBe("ok");
}

describe("input that once crashed or stalled a node", () => {
  it("answers a deeply nested type with bad_request", async () => {
    const { port } = await startNode();
    const client = await TestClient.connect(port);
    client.sendRaw(`{"id":7,"type":${nested(20_000)}}`);
    expect(await client.reply(7)).toEqual({
      type: "error",
      id: 7,
      code: "bad_request",
      message: "type must be a string, got an array",
      temporary: false,
    });
    await stillServing(port);
  });

  it("answers deeply nested data with bad_request, not internal", async () => {
    const { port } = await startNode();
    const client = await TestClient.connect(port);
    client.sendRaw(
      `{"id":3,"type":"publish","channel":"deep:1","data":${nested(20_000)}}`,
    );
    expect(await client.reply(3)).toMatchObject({
      type: "error",
      code: "bad_request",
      temporary: false,
    });
    const answer = await http(port, "POST", "/api/publish", {
      raw: `{"channel":"deep:1","data":${nested(20_000)}}`,
    });
    expect(answer.status).toBe(400);
    await stillServing(port);
  });

  it("answers a request line it cannot parse with 400", async () => {
    const { port } = await startNode();
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(port, "127.0.0.1", () =>
        socket.write("GET //[ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
      );
      let text = "";
      socket.on("data", (chunk) => {
        text += chunk;
        if (text.includes("\r\n\r\n")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on("error", reject);
    });
    expect(reply.startsWith("HTTP/1.1 400 ")).toBe(true);
    await stillServing(port);
  });

  it("reads no more requests than it handles from a greedy one", async () => {
    const { node, port } = await startNode();
    const big = "x".repeat(60_000);
    for (let i = 0; i < 100; i++) await node.publish("big:1", big);
    const greedy = await RawClient.open(port, { keepFrames: false });
    await greedy.connect();
    greedy.pause();

    const before = process.memoryUsage().rss;
    const frames = Array.from({ length: 800 }, (_, i) =>
      encodeFrame(
        Opcode.Text,
        JSON.stringify({
          type: "history",
          id: 100 + i,
          channel: "big:1",
          limit: 300,
        }),
      ),
    );
    greedy.write(Buffer.concat(frames));

    await stillServing(port);
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(200 * 1024 * 1024);
    greedy.terminate();
  });

  it("pages history within half the outbound buffer", async () => {
    const { node, port } = await startNode({
      outboundBufferLimit: 1024 * 1024,
    });
    const big = "x".repeat(60_000);
    for (let i = 0; i < 100; i++) await node.publish("big:2", big);
    const client = await TestClient.connect(port);
    const result = await client.call<{ publications: { offset: number }[] }>(
      "history",
      { channel: "big:2", limit: 300 },
    );
    // 8 entries of 60 002 bytes fit in 512 KiB; a 9th would not.
    expect(result.publications.map((p) => p.offset)).toEqual(
      [93, 94, 95, 96, 97, 98, 99, 100].map((o) => o - 92),
    );
  });

  it("leaves no presence behind a subscribe undone at once", async () => {
    const { port } = await startNode();
    const { client: watcher } = await subscribedClient(port, "ghost:1", {
      presence: true,
      session: "watcher",
    });
    const guest = await RawClient.open(port);
    await guest.connect({ session: "guest" });
    // Both frames in one write, so the node reads them in one turn.
    guest.write(
      Buffer.concat([
        encodeFrame(
          Opcode.Text,
          JSON.stringify({ type: "subscribe", id: 10, channel: "ghost:1" }),
        ),
        encodeFrame(
          Opcode.Text,
          JSON.stringify({ type: "unsubscribe", id: 11, channel: "ghost:1" }),
        ),
      ]),
    );
    await guest.waitForText((f) => f.id === 10);
    await guest.waitForText((f) => f.id === 11);

    await waitUntil(async () => {
      const { members } = await watcher.call<{ members: unknown[] }>(
        "presence",
        { channel: "ghost:1" },
      );
      return members.length === 1;
    });
    const changes = watcher.pushes.map((f) => f.type);
    expect(changes).toEqual(changes.length === 0 ? [] : ["join", "leave"]);
  });
});

describe("the memory engine's budget", () => {
  it("forgets the oldest idempotency keys past their share", async () => {
    const node = createNode({ historyBudget: 100_000, historySize: 1 });
    await node.start();
    try {
      for (let i = 0; i < 2_000; i++) {
        await node.publish("keys:1", i, { key: `k${i}` });
      }
      expect((await node.publish("keys:1", 0, { key: "k0" })).duplicate).toBe(
        false,
      );
      expect(
        (await node.publish("keys:1", 1999, { key: "k1999" })).duplicate,
      ).toBe(true);
    } finally {
      await node.close();
    }
  });

  it("counts each entry's overhead, not only its data", async () => {
    const node = createNode({ historyBudget: 100_000 });
    await node.start();
    try {
      for (let c = 0; c < 100; c++) {
        for (let i = 0; i < 50; i++) await node.publish(`cost:${c}`, 1);
      }
      let kept = 0;
      for (let c = 0; c < 100; c++) {
        const read = await node.engine.read(`cost:${c}`, {
          since: undefined,
          limit: 300,
          reverse: false,
        });
        kept += read.publications.length;
      }
      // Each one-byte entry is reckoned at 161 bytes.
      expect(kept).toBeLessThanOrEqual(Math.floor(100_000 / 161));
      expect(kept).toBeGreaterThan(0);
    } finally {
      await node.close();
    }
  });
});

describe("options that once slipped through", () => {
  it.each([
    [{ connectTimeout: 2 ** 31 }, "connectTimeout must be at most"],
    [{ presenceTtl: 30 * 86_400_000 }, "presenceTtl must be at most"],
    [{ tokenSecret: "" }, "tokenSecret must not be empty"],
    [{ apiKey: "" }, "apiKey must not be empty"],
    [{ frameLimit: 0, maxMessageSize: 0 }, "frameLimit must be at least 1"],
    [{ pongTimeout: 0 }, "pongTimeout must be at least 1"],
    [{ jwksUrl: "file:///etc/passwd" }, "jwksUrl must be an http(s) URL"],
  ])("refuses %j", (options, message) => {
    expect(() => resolveOptions(options)).toThrow(message);
  });

  it("does not take a name starting with 127. for loopback", async () => {
    const node = createNode({ host: "127.evil.example", port: 0 });
    await expect(node.listen()).rejects.toMatchObject({
      code: "SB_ERR_INSECURE",
    });
  });
});
