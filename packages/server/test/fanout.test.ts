import { afterEach, describe, expect, it } from "vitest";

import {
  TestClient,
  http,
  inBatches,
  isMessage,
  startNode,
  stopAll,
  subscribedClient,
  type ServerFrame,
} from "./helpers.js";

afterEach(stopAll);

describe("fan-out", () => {
  it("gives 1000 subscribers the same 100 messages in order", async () => {
    const { node, port } = await startNode();
    const channel = "fan:all";
    const clients = await inBatches(1000, 100, () =>
      subscribedClient(port, channel),
    );
    expect(node.connectionCount).toBe(1000);
    const epochs = new Set(clients.map(({ sub }) => sub.epoch));
    expect(epochs.size).toBe(1);
    for (const { sub } of clients) expect(sub.offset).toBe(0);

    const outcomes = [];
    for (let n = 1; n <= 100; n++) {
      outcomes.push(await node.publish(channel, { n }));
    }
    expect(outcomes.map((o) => o.offset)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1),
    );

    const epoch = clients[0]!.sub.epoch;
    const expected = Array.from({ length: 100 }, (_, i) => ({
      type: "message",
      channel,
      epoch,
      offset: i + 1,
      data: { n: i + 1 },
    }));
    await Promise.all(
      clients.map(async ({ client }) => {
        const got = await client.waitForCount(isMessage(channel), 100, 30_000);
        expect(got).toEqual(expected);
      }),
    );
  }, 60_000);

  it("sends node, HTTP and client publishes down one path", async () => {
    const { node, port } = await startNode();
    const channel = "fan:paths";
    const { client: reader, sub } = await subscribedClient(port, channel);
    const { client: writer, id: writerId } = await subscribedClient(
      port,
      channel,
    );

    const fromNode = await node.publish(channel, { via: "node" });
    const fromHttp = await http(port, "POST", "/api/publish", {
      body: { channel, data: { via: "http" } },
    });
    const fromClient = await writer.call<{ offset: number }>("publish", {
      channel,
      data: { via: "ws" },
    });
    expect(fromHttp.status).toBe(200);
    expect(fromHttp.json).toEqual({ epoch: sub.epoch, offset: 2 });
    expect([fromNode.offset, fromClient.offset]).toEqual([1, 3]);

    const expected = [
      { type: "message", channel, epoch: sub.epoch, offset: 1 },
      { type: "message", channel, epoch: sub.epoch, offset: 2 },
      { type: "message", channel, epoch: sub.epoch, offset: 3 },
    ];
    const data = [{ via: "node" }, { via: "http" }, { via: "ws" }];
    for (const client of [reader, writer]) {
      const got = await client.waitForCount(isMessage(channel), 3);
      expect(got).toEqual([
        { ...expected[0], data: data[0] },
        { ...expected[1], data: data[1] },
        { ...expected[2], data: data[2], publisher: { client: writerId } },
      ]);
    }
  });

  it("never sends a message before the subscribe reply", async () => {
    const { node, port } = await startNode({ publishRate: 10_000 });
    const channel = "fan:race";
    let publishing = true;
    let published = 0;
    const background = (async () => {
      while (publishing) {
        await node.publish(channel, { from: "node" });
        published += 1;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    const subscribers = await inBatches(200, 50, async (i) => {
      const client = await TestClient.connect(port);
      // Subscribe and publish in one write: the publish lands while the
      // subscription is being prepared.
      const reply = client.request("subscribe", { channel });
      client.send({ type: "publish", id: 1000, channel, data: { i } });
      return { client, reply: await reply };
    });
    publishing = false;
    await background;
    expect(published).toBeGreaterThan(0);

    const last = await node.publish(channel, { from: "last" });
    await Promise.all(
      subscribers.map(async ({ client, reply }) => {
        await client.waitFor(
          (f) => f.type === "message" && f.offset === last.offset,
        );
        checkStream(client, reply, last.offset);
      }),
    );
  }, 30_000);
});

/**
 * The subscribe `ok` precedes every message of the channel, and messages
 * run from the reply's offset + 1 to `top` without gap or repeat.
 */
function checkStream(
  client: TestClient,
  reply: ServerFrame,
  top: number,
): void {
  expect(reply.type).toBe("ok");
  const result = reply.result as { epoch: string; offset: number };
  const replyIndex = client.frames.indexOf(reply);
  const messages = client.frames.filter((f) => f.type === "message");
  const firstMessage = client.frames.findIndex((f) => f.type === "message");
  expect(firstMessage).toBeGreaterThan(replyIndex);
  const offsets = messages.map((m) => m.offset);
  const wanted = Array.from(
    { length: top - result.offset },
    (_, i) => result.offset + 1 + i,
  );
  expect(offsets).toEqual(wanted);
  for (const message of messages) expect(message.epoch).toBe(result.epoch);
}
