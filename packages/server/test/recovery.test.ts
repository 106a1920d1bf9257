import { afterEach, describe, expect, it } from "vitest";

import type { SwitchboardNode } from "../src/index.js";
import {
  TestClient,
  http,
  sleep,
  startNode,
  stopAll,
  subscribedClient,
  waitUntil,
  type ServerFrame,
} from "./helpers.js";

afterEach(stopAll);

/** The `message` push a publication of `data` at `offset` becomes. */
function message(channel: string, epoch: string, offset: number) {
  return { type: "message", channel, epoch, offset, data: { n: offset } };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Publishes `count` messages whose data is `{n: offset}`. */
async function publishN(
  node: SwitchboardNode,
  channel: string,
  count: number,
): Promise<{ epoch: string; offset: number }> {
  const { offset } = await node.engine.read(channel, {
    since: undefined,
    limit: 0,
    reverse: false,
  });
  let last = { epoch: "", offset };
  for (let n = offset + 1; n <= offset + count; n++) {
    last = await node.publish(channel, { n });
    expect(last.offset).toBe(n);
  }
  return last;
}

describe("recovery at subscribe", () => {
  it("recovers the 50 messages missed, then goes live", async () => {
    const { node, port } = await startNode();
    const channel = "rec:away";
    await publishN(node, channel, 5);
    const first = await subscribedClient(port, channel);
    await publishN(node, channel, 2);
    const seen = await first.client.waitForCount(
      (f) => f.type === "message",
      2,
    );
    const since = { epoch: first.sub.epoch, offset: seen[1]!.offset };
    expect(since.offset).toBe(7);
    await first.client.close();

    const top = await publishN(node, channel, 50);
    expect(top.offset).toBe(57);

    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since,
    });
    expect(result).toEqual({
      epoch: since.epoch,
      offset: 57,
      recovered: true,
      publications: range(8, 57).map((n) => message(channel, since.epoch, n)),
    });

    await publishN(node, channel, 3);
    const live = await client.waitForCount((f) => f.type === "message", 3);
    expect(live).toEqual(
      range(58, 60).map((n) => message(channel, since.epoch, n)),
    );
  });

  it("answers recovered: true with nothing when since is the top", async () => {
    const { node, port } = await startNode();
    const channel = "rec:top";
    const top = await publishN(node, channel, 4);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since: { epoch: top.epoch, offset: 4 },
    });
    expect(result).toEqual({
      epoch: top.epoch,
      offset: 4,
      recovered: true,
      publications: [],
    });
  });

  it("answers recovered: false for a since above the top", async () => {
    const { node, port } = await startNode();
    const channel = "rec:above";
    const top = await publishN(node, channel, 4);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since: { epoch: top.epoch, offset: 5 },
    });
    expect(result).toEqual({ epoch: top.epoch, offset: 4, recovered: false });
  });

  it("answers recovered: false for a since from another epoch", async () => {
    const { node, port } = await startNode();
    const channel = "rec:epoch";
    const top = await publishN(node, channel, 4);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since: { epoch: `${top.epoch}x`, offset: 2 },
    });
    expect(result).toEqual({ epoch: top.epoch, offset: 4, recovered: false });
  });

  it("answers recovered: false past historySize", async () => {
    const { node, port } = await startNode({ historySize: 10 });
    const channel = "rec:size";
    const first = await publishN(node, channel, 1);
    await publishN(node, channel, 11);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since: first,
    });
    expect(result).toEqual({
      epoch: first.epoch,
      offset: 12,
      recovered: false,
    });
  });

  it("recovers exactly historySize messages when all are kept", async () => {
    const { node, port } = await startNode({ historySize: 10 });
    const channel = "rec:size-edge";
    const since = await publishN(node, channel, 2);
    await publishN(node, channel, 10);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since,
    });
    expect(result.recovered).toBe(true);
    expect(result.publications!.map((p) => p.offset)).toEqual(range(3, 12));
  });

  it("answers recovered: false once historyTtl has passed", async () => {
    const { node, port } = await startNode({
      namespaces: { ttl: { historyTtl: 150 } },
    });
    const channel = "ttl:room";
    const since = await publishN(node, channel, 1);
    await publishN(node, channel, 3);
    // Hold the channel so its position is kept while history expires.
    const holder = await subscribedClient(port, channel);
    expect(holder.sub.offset).toBe(4);
    await waitUntil(async () => {
      const read = await http(
        port,
        "GET",
        `/api/history?channel=${channel}&limit=10`,
      );
      return read.json.publications.length === 0;
    }, 3_000);

    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since,
    });
    expect(result).toEqual({
      epoch: since.epoch,
      offset: 4,
      recovered: false,
    });
  });

  it("answers recovered: false past recoveryMaxPublications", async () => {
    const { node, port } = await startNode({
      recoveryMaxPublications: 20,
      historySize: 100,
    });
    const channel = "rec:max";
    const since = await publishN(node, channel, 1);
    await publishN(node, channel, 21);
    const client = await TestClient.connect(port);
    const over = await client.subscribe(channel, {
      since,
    });
    expect(over).toEqual({ epoch: since.epoch, offset: 22, recovered: false });

    const other = await TestClient.connect(port);
    const atLimit = await other.subscribe(channel, {
      since: { epoch: since.epoch, offset: 2 },
    });
    expect(atLimit.recovered).toBe(true);
    expect(atLimit.publications!.map((p) => p.offset)).toEqual(range(3, 22));
  });

  it("answers recovered: false past 1 MiB of recovered data", async () => {
    const { node, port } = await startNode();
    const channel = "rec:bytes";
    const since = await node.publish(channel, "start");
    // 60,002 bytes of UTF-8 each (30,000 two-byte characters): 20 of them
    // are over 1 MiB, though only 600,040 UTF-16 code units.
    const wide = "\u00e9".repeat(30_000);
    for (let i = 0; i < 20; i++) await node.publish(channel, wide);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since,
    });
    // Compared field by field: a failure must not print a megabyte.
    expect([result.epoch, result.offset, result.recovered]).toEqual([
      since.epoch,
      21,
      false,
    ]);
    expect("publications" in result).toBe(false);
  });

  it("recovers up to 1 MiB of data", async () => {
    const { node, port } = await startNode();
    const channel = "rec:bytes-fit";
    const since = await node.publish(channel, "start");
    const narrow = "a".repeat(60_000);
    for (let i = 0; i < 17; i++) await node.publish(channel, narrow);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel, {
      since,
    });
    expect(result.recovered).toBe(true);
    expect(result.publications?.length).toBe(17);
  });

  it("omits recovered when since is not sent", async () => {
    const { node, port } = await startNode();
    const channel = "rec:fresh";
    const top = await publishN(node, channel, 3);
    const client = await TestClient.connect(port);
    const result = await client.subscribe(channel);
    expect(result).toEqual({ epoch: top.epoch, offset: 3 });
  });
});

describe("history requests", () => {
  async function historyNode() {
    const started = await startNode({ historyMaxLimit: 50 });
    const top = await publishN(started.node, "hist:room", 10);
    const client = await TestClient.connect(started.port);
    return { ...started, client, epoch: top.epoch };
  }

  const channel = "hist:room";

  it("returns the position only without a limit", async () => {
    const { client, epoch } = await historyNode();
    const result = await client.call("history", { channel });
    expect(result).toEqual({ epoch, offset: 10, publications: [] });
  });

  it("returns the oldest entries first up to the limit", async () => {
    const { client, epoch } = await historyNode();
    const result = await client.call("history", { channel, limit: 3 });
    expect(result).toEqual({
      epoch,
      offset: 10,
      publications: range(1, 3).map((n) => message(channel, epoch, n)),
    });
  });

  it("returns the newest entries newest first with reverse", async () => {
    const { client, epoch } = await historyNode();
    const result = await client.call("history", {
      channel,
      limit: 3,
      reverse: true,
    });
    expect(result).toEqual({
      epoch,
      offset: 10,
      publications: [10, 9, 8].map((n) => message(channel, epoch, n)),
    });
  });

  it("returns the entries after since", async () => {
    const { client, epoch } = await historyNode();
    const result = await client.call("history", {
      channel,
      since: { epoch, offset: 7 },
      limit: 50,
    });
    expect(result).toEqual({
      epoch,
      offset: 10,
      publications: range(8, 10).map((n) => message(channel, epoch, n)),
    });
  });

  it("reads from the oldest for a since of another epoch", async () => {
    const { client, epoch } = await historyNode();
    const result = await client.call("history", {
      channel,
      since: { epoch: "other", offset: 7 },
      limit: 2,
    });
    expect(result).toEqual({
      epoch,
      offset: 10,
      publications: range(1, 2).map((n) => message(channel, epoch, n)),
    });
  });

  it("refuses a limit over historyMaxLimit with bad_request", async () => {
    const { client } = await historyNode();
    const reply = await client.request("history", { channel, limit: 51 });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "bad_request",
      message: "limit must be at most 50",
      temporary: false,
    });
    const ok = await client.request("history", { channel, limit: 50 });
    expect(ok.type).toBe("ok");
  });
});

describe("idempotent publish", () => {
  it("repeats the first result as duplicate, storing nothing", async () => {
    const { port } = await startNode();
    const channel = "idem:room";
    const { client: reader, sub } = await subscribedClient(port, channel);
    const client = await TestClient.connect(port);

    const publish = { channel, key: "k-1", data: { n: 1 } };
    const first = await client.call("publish", publish);
    expect(first).toEqual({ epoch: sub.epoch, offset: 1 });
    const other = await client.call("publish", { ...publish, key: "k-2" });
    expect(other).toEqual({ epoch: sub.epoch, offset: 2 });
    const again = await client.call("publish", {
      ...publish,
      data: { n: "changed" },
    });
    expect(again).toEqual({ epoch: sub.epoch, offset: 1, duplicate: true });

    const history = await client.call("history", { channel, limit: 10 });
    expect(history).toMatchObject({ offset: 2 });
    const published = (history as { publications: ServerFrame[] }).publications;
    expect(published.map((p) => [p.offset, p.data])).toEqual([
      [1, { n: 1 }],
      [2, { n: 1 }],
    ]);
    const messages = await reader.waitForCount((f) => f.type === "message", 2);
    expect(messages.map((m) => m.offset)).toEqual([1, 2]);
  });

  it("scopes keys to the channel", async () => {
    const { port } = await startNode();
    const client = await TestClient.connect(port);
    const a = await client.call("publish", {
      channel: "idem:a",
      key: "same",
      data: 1,
    });
    const b = await client.call("publish", {
      channel: "idem:b",
      key: "same",
      data: 1,
    });
    expect(a).toMatchObject({ offset: 1 });
    expect(b).toMatchObject({ offset: 1 });
    expect(b).not.toHaveProperty("duplicate");
  });

  it("forgets a key after the idempotency window", async () => {
    const { port } = await startNode({ idempotencyWindow: 100 });
    const client = await TestClient.connect(port);
    const publish = { channel: "idem:w", key: "k", data: 1 };
    expect(await client.call("publish", publish)).toMatchObject({ offset: 1 });
    // The window is a duration: only time passing can end it.
    await sleep(150);
    expect(await client.call("publish", publish)).toEqual({
      epoch: expect.any(String),
      offset: 2,
    });
  });
});
