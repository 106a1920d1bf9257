import { afterEach, describe, expect, it } from "vitest";

import {
  RawClient,
  TestClient,
  anonUser,
  isMessage,
  startNode,
  stopAll,
  subscribedClient,
  waitUntil,
} from "./helpers.js";

afterEach(stopAll);

describe("outbound frames", () => {
  it("frames payloads of every length class as clients read them", async () => {
    const { node, port } = await startNode();
    const { client } = await subscribedClient(port, "len:1");

    // A 7-bit, a 16-bit and a 64-bit length field: the message push of a
    // short string, of a 1000-character one, and a history reply of three
    // 30000-character messages.
    const texts = ["a", "b".repeat(1000), "c".repeat(30_000)];
    await node.publish("len:1", texts[0]!);
    await node.publish("len:1", texts[1]!);
    await node.publish("len:1", texts[2]!);
    await node.publish("len:1", texts[2]!);
    await node.publish("len:1", texts[2]!);
    const received = await client.waitForCount(isMessage("len:1"), 5);
    expect(received.map((frame) => frame.data)).toEqual([
      ...texts,
      texts[2],
      texts[2],
    ]);

    const history = await client.call<{ publications: { data: string }[] }>(
      "history",
      { channel: "len:1", limit: 3, reverse: true },
    );
    expect(history.publications.map((p) => p.data.length)).toEqual([
      30_000, 30_000, 30_000,
    ]);
  });

  it("writes a burst published in one turn to a socket at once", async () => {
    const { node, port } = await startNode();
    const raw = await RawClient.open(port);
    await raw.connect();
    await raw.request("subscribe", { channel: "burst:1" });
    let chunks = 0;
    raw.socket.on("data", () => (chunks += 1));

    await Promise.all(
      Array.from({ length: 8 }, (_, n) => node.publish("burst:1", { n })),
    );
    await waitUntil(() => raw.messageOffsets.length === 8);
    expect(raw.messageOffsets).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(chunks).toBe(1);
  });

  it("sends what was queued before a close frame", async () => {
    const { node, port } = await startNode();
    const client = await TestClient.connect(port, { session: "s-close" });
    await client.subscribe("close:1");

    await node.publish("close:1", { last: true });
    expect(node.disconnectUser(anonUser("s-close"), false)).toBe(1);
    const closed = await client.waitForClose();
    expect(closed.code).toBe(4000);
    expect(client.messages("close:1").map((frame) => frame.data)).toEqual([
      { last: true },
    ]);
  });
});
