/**
 * DESIGN.md's bad-input table, one input per test, against a real node and
 * real sockets. Every test asserts the exact answer, then that another
 * client on the same node still receives a publication.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  CapturingLogger,
  Opcode,
  RawClient,
  TestClient,
  collectGarbage,
  frameHeader,
  mintToken,
  startNode,
  waitUntil,
  type StartedNode,
} from "./helpers.js";

/** DESIGN.md defaults. */
const FRAME_LIMIT = 65 * 1024;
const MAX_MESSAGE_SIZE = 64 * 1024;
const MAX_SUBSCRIPTIONS = 128;
const OUTBOUND_BUFFER_LIMIT = 1024 * 1024;

const WITNESS_CHANNEL = "room:witness";

/**
 * A node with one long-lived witness subscribed to `room:witness`.
 * `stillServing` has a fresh client publish there and waits until the
 * witness receives it within 1 s.
 */
function withWitnessedNode(
  options: Parameters<typeof startNode>[0] = {},
  connectFields: () => Promise<Record<string, unknown>> = async () => ({}),
) {
  const state = {} as {
    started: StartedNode;
    witness: TestClient;
    logger: CapturingLogger;
  };
  let check = 0;

  beforeAll(async () => {
    state.logger = new CapturingLogger();
    state.started = await startNode({ ...options, logger: state.logger });
    state.witness = await TestClient.connect(
      state.started.port,
      await connectFields(),
    );
    await state.witness.subscribe(WITNESS_CHANNEL);
  });

  afterAll(async () => {
    await state.witness?.close();
    await state.started?.stop();
  });

  async function stillServing(): Promise<void> {
    check += 1;
    const data = { check };
    const publisher = await TestClient.connect(
      state.started.port,
      await connectFields(),
    );
    const reply = await publisher.request("publish", {
      channel: WITNESS_CHANNEL,
      data,
    });
    expect(reply.type).toBe("ok");
    const message = await state.witness.waitForMessage(
      WITNESS_CHANNEL,
      data,
      1_000,
    );
    expect(message.data).toEqual(data);
    expect(state.witness.isOpen).toBe(true);
    await publisher.close();
  }

  return { state, stillServing };
}

/** A JSON text whose UTF-8 encoding is exactly `bytes` long. */
function publishFrameOfSize(bytes: number, channel: string): string {
  const empty = JSON.stringify({
    type: "publish",
    id: 2,
    channel,
    data: "",
  });
  return JSON.stringify({
    type: "publish",
    id: 2,
    channel,
    data: "x".repeat(bytes - empty.length),
  });
}

describe("bad input in open mode", () => {
  const { state, stillServing } = withWitnessedNode({ connectTimeout: 500 });
  const port = () => state.started.port;

  /**
   * Only the oversized publishes carry string data on the witness channel.
   * Called after `stillServing`: per-channel order means one that had been
   * published would have arrived before the check message.
   */
  function expectNoStringOnWitness(): void {
    const strings = state.witness
      .messages(WITNESS_CHANNEL)
      .filter((message) => typeof message.data === "string");
    expect(strings).toEqual([]);
  }

  it.each([["{not json"], [""], ['{"type":"ping","id":2']])(
    "closes with 4400 on non-JSON text %j",
    async (text) => {
      const client = await TestClient.connect(port());
      client.sendRaw(text);
      const closed = await client.waitForClose();
      expect(closed.code).toBe(4400);
      expect(closed.reason).toBe("frame is not valid JSON");
      await stillServing();
    },
  );

  it.each([["[]"], ['[{"type":"ping","id":2}]'], ["42"], ['"ping"'], ["null"]])(
    "closes with 4400 on JSON that is not an object: %s",
    async (text) => {
      const client = await TestClient.connect(port());
      client.sendRaw(text);
      const closed = await client.waitForClose();
      expect(closed.code).toBe(4400);
      expect(closed.reason).toBe("frame is not a JSON object");
      await stillServing();
    },
  );

  it("answers an unknown type with bad_request, stays open", async () => {
    const client = await TestClient.connect(port());
    const reply = await client.request("teleport", { channel: "room:1" });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "bad_request",
      message: 'unknown request type "teleport"',
      temporary: false,
    });
    expect((await client.request("ping")).type).toBe("ok");
    expect(client.isOpen).toBe(true);
    await client.close();
    await stillServing();
  });

  it.each([
    ["missing", { type: "ping" }],
    ["a string", { type: "ping", id: "7" }],
    ["a fraction", { type: "ping", id: 1.5 }],
    ["zero", { type: "ping", id: 0 }],
    ["negative", { type: "ping", id: -1 }],
    ["2^53", { type: "ping", id: 2 ** 53 }],
    ["null", { type: "ping", id: null }],
  ])("closes with 4400 when id is %s", async (_, frame) => {
    const client = await TestClient.connect(port());
    client.send(frame);
    const closed = await client.waitForClose();
    expect(closed.code).toBe(4400);
    expect(closed.reason).toBe("id must be an integer from 1 to 2^53-1");
    await stillServing();
  });

  it("accepts the largest id, 2^53-1", async () => {
    const client = await TestClient.connect(port());
    client.send({ type: "ping", id: Number.MAX_SAFE_INTEGER });
    const reply = await client.reply(Number.MAX_SAFE_INTEGER);
    expect(reply).toEqual({ type: "ok", id: Number.MAX_SAFE_INTEGER });
    await client.close();
    await stillServing();
  });

  it("closes with 1003 on a binary frame", async () => {
    const client = await TestClient.connect(port());
    client.sendRaw(Buffer.from('{"type":"ping","id":2}'));
    const closed = await client.waitForClose();
    expect(closed.code).toBe(1003);
    expect(closed.reason).toBe("binary frames are not accepted");
    await stillServing();
  });

  it("closes with 1009 on a frame one byte over the limit", async () => {
    const client = await TestClient.connect(port());
    const text = publishFrameOfSize(FRAME_LIMIT + 1, WITNESS_CHANNEL);
    expect(Buffer.byteLength(text)).toBe(FRAME_LIMIT + 1);
    client.sendRaw(text);
    const closed = await client.waitForClose();
    expect(closed.code).toBe(1009);
    await stillServing();
    expectNoStringOnWitness();
  });

  it("accepts a frame at the limit, answering too_large data", async () => {
    const client = await TestClient.connect(port());
    const text = publishFrameOfSize(FRAME_LIMIT, WITNESS_CHANNEL);
    client.sendRaw(text);
    const reply = await client.reply(2);
    expect(reply).toEqual({
      type: "error",
      id: 2,
      code: "too_large",
      message: `data over ${MAX_MESSAGE_SIZE} bytes`,
      temporary: false,
    });
    expect(client.isOpen).toBe(true);
    await client.close();
    await stillServing();
    expectNoStringOnWitness();
  });

  it("closes with 1009 on a declared length over the limit", async () => {
    const raw = await RawClient.open(port());
    // Only the header: the close must not wait for the payload.
    raw.write(frameHeader(Opcode.Text, FRAME_LIMIT + 1));
    const closed = await raw.waitForClose();
    expect(closed.code).toBe(1009);
    raw.terminate();
    await stillServing();
  });

  it("closes with 1009 on fragments growing past the limit", async () => {
    const raw = await RawClient.open(port());
    await raw.connect();
    const part = "x".repeat(40_000);
    raw.sendFrame(Opcode.Text, `{"type":"ping","id":2,"pad":"${part}`, {
      fin: false,
    });
    raw.sendFrame(Opcode.Continuation, part, { fin: false });
    const closed = await raw.waitForClose();
    expect(closed.code).toBe(1009);
    raw.terminate();
    await stillServing();
  });

  it("answers data one byte over maxMessageSize with too_large", async () => {
    const client = await TestClient.connect(port());
    await client.subscribe("room:size");
    const fits = "y".repeat(MAX_MESSAGE_SIZE - 2);
    const over = "z".repeat(MAX_MESSAGE_SIZE - 1);
    expect(JSON.stringify(fits).length).toBe(MAX_MESSAGE_SIZE);
    const tooLarge = await client.request("publish", {
      channel: "room:size",
      data: over,
    });
    expect(tooLarge).toMatchObject({ type: "error", code: "too_large" });
    const ok = await client.request("publish", {
      channel: "room:size",
      data: fits,
    });
    expect(ok).toMatchObject({ type: "ok", result: { offset: 1 } });
    const message = await client.waitForMessage("room:size", fits);
    expect(message.offset).toBe(1);
    expect(client.messages("room:size")).toHaveLength(1);
    await client.close();
    await stillServing();
  });

  it.each([
    ["C3 28", [0xc3, 0x28]],
    ["FF", [0xff]],
    ["ED A0 80", [0xed, 0xa0, 0x80]],
  ])("closes with 1007 on invalid UTF-8 %s", async (_, bytes) => {
    const raw = await RawClient.open(port());
    await raw.connect();
    raw.sendFrame(Opcode.Text, Buffer.from(bytes));
    const closed = await raw.waitForClose();
    expect(closed.code).toBe(1007);
    raw.terminate();
    await stillServing();
  });

  it("closes with 1002 on the reserved opcode 0x3", async () => {
    const raw = await RawClient.open(port());
    raw.sendFrame(0x3, Buffer.alloc(0));
    const closed = await raw.waitForClose();
    expect(closed.code).toBe(1002);
    raw.terminate();
    await stillServing();
  });

  it("closes with 4400 on a request before connect", async () => {
    const client = await TestClient.open(port());
    client.send({ type: "subscribe", id: 1, channel: WITNESS_CHANNEL });
    const closed = await client.waitForClose();
    expect(closed).toEqual({
      code: 4400,
      reason: "the first request must be connect",
    });
    expect(client.pushes).toEqual([]);
    await stillServing();
  });

  it.each([
    ["an unknown type", { type: "join", id: 1 }],
    ["a bad field", { type: "subscribe", id: 1, channel: "a b" }],
  ])("closes with 4400 on %s before connect", async (_what, frame) => {
    const client = await TestClient.open(port());
    client.send(frame);
    expect(await client.waitForClose()).toEqual({
      code: 4400,
      reason: "the first request must be connect",
    });
    await stillServing();
  });

  it("closes with 4408 when no connect comes in time", async () => {
    const opened = Date.now();
    const client = await TestClient.open(port());
    const closed = await client.waitForClose(2_000);
    expect(closed).toEqual({ code: 4408, reason: "no connect in time" });
    expect(Date.now() - opened).toBeGreaterThanOrEqual(490);
    await stillServing();
  });

  it("answers a second connect with bad_request, stays open", async () => {
    const client = await TestClient.connect(port());
    const reply = await client.request("connect");
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "bad_request",
      message: "already connected",
      temporary: false,
    });
    expect((await client.request("ping")).type).toBe("ok");
    await client.close();
    await stillServing();
  });

  it.each([
    ["empty", ""],
    ["201 characters", "r".repeat(201)],
    ["with a space", "room 1"],
    ["with a NUL", "room\u00001"],
    ["with a *", "room:*"],
  ])("answers a channel name %s with error bad_request", async (_, channel) => {
    const client = await TestClient.connect(port());
    for (const type of ["subscribe", "publish", "history", "presence"]) {
      const reply = await client.request(type, { channel, data: 1 });
      expect(reply).toEqual({
        type: "error",
        id: reply.id,
        code: "bad_request",
        message: "channel must be 1-200 characters of A-Za-z0-9_-:.@=/",
        temporary: false,
      });
    }
    expect(client.isOpen).toBe(true);
    await client.close();
    await stillServing();
  });

  it("accepts a channel name of 200 characters", async () => {
    const client = await TestClient.connect(port());
    const channel = "r".repeat(200);
    const result = await client.subscribe(channel);
    expect(result).toMatchObject({ offset: 0 });
    await client.close();
    await stillServing();
  });

  it("answers a repeated subscribe with error bad_request", async () => {
    const client = await TestClient.connect(port());
    await client.subscribe("room:twice");
    const reply = await client.request("subscribe", { channel: "room:twice" });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "bad_request",
      message: "already subscribed",
      temporary: false,
    });
    await client.close();
    await stillServing();
  });

  it("answers the 129th subscription with error limit_exceeded", async () => {
    const client = await TestClient.connect(port());
    expect(client.connectResult?.limits).toMatchObject({
      maxSubscriptions: MAX_SUBSCRIPTIONS,
    });
    const replies = await Promise.all(
      Array.from({ length: MAX_SUBSCRIPTIONS }, (_, i) =>
        client.request("subscribe", { channel: `room:many-${i}` }),
      ),
    );
    expect(replies.every((reply) => reply.type === "ok")).toBe(true);
    const refused = await client.request("subscribe", {
      channel: "room:one-too-many",
    });
    expect(refused).toEqual({
      type: "error",
      id: refused.id,
      code: "limit_exceeded",
      message: `at most ${MAX_SUBSCRIPTIONS} subscriptions per connection`,
      temporary: false,
    });
    const left = await client.request("unsubscribe", {
      channel: "room:many-0",
    });
    expect(left.type).toBe("ok");
    const again = await client.request("subscribe", {
      channel: "room:one-too-many",
    });
    expect(again.type).toBe("ok");
    await client.close();
    await stillServing();
  });

  it("logs no error and no warning for any of the bad input above", () => {
    expect(state.logger.at("error")).toEqual([]);
    expect(state.logger.at("warn").map((line) => line.message)).toEqual([
      "open mode: no token verification, every connection is anonymous",
    ]);
  });
});

describe("bad input with token auth", () => {
  const secret = "bad-input-secret";
  const grants = {
    subscribe: ["room:*", "news:*"],
    publish: ["room:*"],
  };
  const { state, stillServing } = withWitnessedNode(
    { tokenSecret: secret },
    async () => ({
      token: await mintToken(secret, { sub: "witness", sb: grants }),
    }),
  );

  it("answers an ungranted publish with error forbidden", async () => {
    const { port } = state.started;
    const listener = await TestClient.connect(port, {
      token: await mintToken(secret, { sub: "reader", sb: grants }),
    });
    await listener.subscribe("news:1");
    const client = await TestClient.connect(port, {
      token: await mintToken(secret, { sub: "alice", sb: grants }),
    });
    const reply = await client.request("publish", {
      channel: "news:1",
      data: "not granted",
    });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "forbidden",
      message: "publish not granted",
      temporary: false,
    });
    const granted = await client.request("publish", {
      channel: "room:granted",
      data: 1,
    });
    expect(granted.type).toBe("ok");
    expect(client.isOpen).toBe(true);
    await stillServing();
    expect(listener.messages("news:1")).toEqual([]);
    await listener.close();
    await client.close();
  });

  it("says how long a refreshed token may be", async () => {
    const { port } = state.started;
    const client = await TestClient.connect(port, {
      token: await mintToken(secret, { sub: "dave", sb: grants }),
    });
    const reply = await client.request("refresh", {
      token: "x".repeat(16_385),
    });
    expect(reply).toMatchObject({
      type: "error",
      code: "bad_request",
      message: "token must be a string of 1-16384 characters",
    });
    expect(client.isOpen).toBe(true);
    await client.close();
    await stillServing();
  });

  it("answers an ungranted subscribe with error forbidden", async () => {
    const { port } = state.started;
    const client = await TestClient.connect(port, {
      token: await mintToken(secret, { sub: "bob", sb: grants }),
    });
    const reply = await client.request("subscribe", { channel: "dm:carol" });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "forbidden",
      message: "subscribe not granted",
      temporary: false,
    });
    await client.close();
    await stillServing();
  });
});

describe("a client that never reads", () => {
  const CHANNEL = "slow:1";
  /** 175 messages of 60 000 characters: 10.5 MB in all. */
  const MESSAGES = 175;
  const SIZE = 60_000;
  let started: StartedNode;
  let logger: CapturingLogger;

  beforeAll(async () => {
    logger = new CapturingLogger();
    // History off for the channel, so memory measures only buffering.
    started = await startNode({
      logger,
      heartbeat: 10_000,
      pongTimeout: 10_000,
      namespaces: { slow: { historySize: 0 } },
    });
  });

  afterAll(() => started?.stop());

  it("closes a non-reading client with 4508, memory bounded", async () => {
    const { node, port } = started;
    const body = "s".repeat(SIZE);
    // Publishes the 10 MB, letting the event loop (and so the readers,
    // which share this process) run between messages.
    const publishAll = async (round: number, sample: () => void) => {
      for (let i = 0; i < MESSAGES; i++) {
        await node.publish(CHANNEL, { round, i, body });
        await new Promise((resolve) => setImmediate(resolve));
        sample();
      }
    };

    // A healthy subscriber that keeps only offsets, not 10 MB of data.
    const reader = await RawClient.open(port, { keepFrames: false });
    await reader.connect();
    const joined = await reader.request("subscribe", { channel: CHANNEL });
    expect(joined.type).toBe("ok");
    const readerGot = (count: number) =>
      waitUntil(
        () => reader.messageOffsets.length === count,
        5_000,
        `${count} messages`,
      );

    // Round 1, nobody slow: V8 sizes its heap for this load, so the
    // baseline below includes it and the comparison measures buffering.
    await publishAll(1, () => {});
    await readerGot(MESSAGES);

    const slow = await RawClient.open(port, { keepFrames: false });
    await slow.connect();
    const subscribed = await slow.request("subscribe", { channel: CHANNEL });
    expect(subscribed.type).toBe("ok");
    slow.pause();

    await collectGarbage();
    const before = process.memoryUsage();
    let peakRss = before.rss;
    await publishAll(2, () => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    });
    await collectGarbage();
    const after = process.memoryUsage();

    // The node decided 4508 for the paused client, and only for it.
    const closing = logger.at("debug").filter((l) => l.message === "closing");
    expect(closing.map((l) => l.fields.code)).toEqual([4508]);

    // Resumed, the client gets what was queued, then the close frame.
    slow.resume();
    const closed = await slow.waitForClose(4_000);
    expect(closed).toEqual({ code: 4508, reason: "slow consumer" });
    // What it got is an unbroken run from its first message, cut short.
    const got = slow.messageOffsets;
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(MESSAGES);
    expect(got).toEqual(
      Array.from({ length: got.length }, (_, i) => MESSAGES + 1 + i),
    );
    slow.terminate();

    // The healthy subscriber got every message of both rounds, in order.
    await readerGot(2 * MESSAGES);
    expect(reader.messageOffsets).toEqual(
      Array.from({ length: 2 * MESSAGES }, (_, i) => i + 1),
    );

    // Bounds. A node that queued the 10 MB for the paused client would
    // hold all of it but what the loopback socket buffers absorb (about
    // 4 MB here): about 6 MiB more live heap and buffers after a GC,
    // where this node must stay under its 1 MiB buffer limit plus 1 MiB
    // of slack (it measures about 1 MiB). Resident memory is noisier
    // (1.5-4.5 MiB measured, with V8's heap sizing excluded by round 1):
    // it must grow by less than 10 MiB, C12's bound and the volume sent.
    const retained =
      after.heapUsed +
      after.arrayBuffers -
      before.heapUsed -
      before.arrayBuffers;
    expect(retained).toBeLessThan(OUTBOUND_BUFFER_LIMIT + 1024 * 1024);
    expect(peakRss - before.rss).toBeLessThan(10 * 1024 * 1024);

    await waitUntil(() => node.connectionCount === 1, 6_000, "slow gone");
    await node.publish(CHANNEL, "after");
    await readerGot(2 * MESSAGES + 1);
    reader.terminate();
  });
});
