import type { MessagePush } from "@switchboard/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { Connection, Outcome, Push, RequestBody } from "./connection.js";
import { ConnectionLostError, ServerError } from "./errors.js";
import {
  Subscription,
  type Message,
  type SubscriptionHost,
} from "./subscription.js";

interface Sent {
  readonly body: RequestBody;
  readonly reply: (outcome: Outcome<unknown>) => void;
}

/**
 * A scripted stand-in for one connection: it records the requests the
 * subscription sends and lets the test answer them. The subscription's
 * own state machine is the unit here; the real node is exercised in
 * client.test.ts.
 */
function scriptedConnection(): { connection: Connection; sent: Sent[] } {
  const sent: Sent[] = [];
  const connection = {
    usable: true,
    request(body: RequestBody, reply: (outcome: Outcome<unknown>) => void) {
      sent.push({ body, reply });
    },
  } as unknown as Connection;
  return { connection, sent };
}

function host(): SubscriptionHost {
  return {
    log: () => {},
    historyLimit: () => 50,
    minDelayMs: 100,
    maxDelayMs: 1_000,
    detach: vi.fn(),
    history: vi.fn(),
    presence: vi.fn(),
  };
}

function msg(offset: number): MessagePush {
  return { type: "message", channel: "room:1", epoch: "e1", offset, data: 0 };
}

function ok(result: unknown): Outcome<unknown> {
  return { ok: true, result };
}

/**
 * A live subscription at offset 1 that just received 3: its history
 * request for the gap is `sent[1]`.
 */
function gapAfterOne() {
  const sub = new Subscription("room:1", {}, host());
  const { connection, sent } = scriptedConnection();
  const offsets: number[] = [];
  const holes: unknown[] = [];
  sub.on("message", (m) => offsets.push(m.offset));
  sub.on("discontinuity", (d) => holes.push(d));
  sub.attach(connection);
  sent[0]?.reply(ok({ epoch: "e1", offset: 1 }));
  sub.receive(msg(3));
  return { sent, offsets, holes };
}

describe("subscription", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("subscription - resubscribes with since when the server asks", () => {
    const sub = new Subscription("room:1", {}, host());
    const { connection, sent } = scriptedConnection();
    const offsets: number[] = [];
    sub.on("message", (m: Message) => offsets.push(m.offset));
    sub.attach(connection);
    sent[0]?.reply(ok({ epoch: "e1", offset: 4 }));
    sub.receive(msg(5));

    const events: unknown[] = [];
    sub.on("unsubscribed", (u) => events.push(u));
    sub.receive({
      type: "unsubscribed",
      channel: "room:1",
      code: "insufficient_state",
      reason: "repair",
      resubscribe: true,
    });
    expect(events).toEqual([
      { code: "insufficient_state", reason: "repair", resubscribe: true },
    ]);
    expect(sub.state).toBe("subscribing");
    expect(sent[1]?.body).toEqual({
      type: "subscribe",
      channel: "room:1",
      since: { epoch: "e1", offset: 5 },
    });

    sent[1]?.reply(
      ok({ epoch: "e1", offset: 6, recovered: true, publications: [msg(6)] }),
    );
    expect(sub.state).toBe("subscribed");
    expect(offsets).toEqual([5, 6]);
  });

  it("subscription - ends when the server ends it for good", () => {
    const owner = host();
    const sub = new Subscription("room:1", {}, owner);
    const { connection, sent } = scriptedConnection();
    sub.attach(connection);
    sent[0]?.reply(ok({ epoch: "e1", offset: 0 }));
    sub.receive({
      type: "unsubscribed",
      channel: "room:1",
      code: "forbidden",
      reason: "no longer granted",
      resubscribe: false,
    } as Push);
    expect(sub.state).toBe("unsubscribed");
    expect(owner.detach).toHaveBeenCalledWith(sub);
    expect(sent).toHaveLength(1);
  });

  it("subscription - retries a temporary subscribe error with backoff", () => {
    const sub = new Subscription("room:1", {}, host());
    const { connection, sent } = scriptedConnection();
    sub.attach(connection);
    const busy = new ServerError("unavailable", "busy", true, 2_000);
    sent[0]?.reply({ ok: false, error: busy });

    vi.advanceTimersByTime(1_999);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sent).toHaveLength(2);
    sent[1]?.reply(ok({ epoch: "e1", offset: 0 }));
    expect(sub.state).toBe("subscribed");
  });

  it("subscription - waits for the next connection after a lost one", () => {
    const sub = new Subscription("room:1", {}, host());
    const first = scriptedConnection();
    sub.attach(first.connection);
    sub.detachConnection();
    first.sent[0]?.reply({ ok: false, error: new ConnectionLostError() });
    vi.advanceTimersByTime(10_000);
    expect(first.sent).toHaveLength(1);

    const second = scriptedConnection();
    sub.attach(second.connection);
    expect(second.sent).toHaveLength(1);
  });

  it("subscription - recovers a gap with history at historyMaxLimit", () => {
    const { sent, offsets } = gapAfterOne();
    expect(sent[1]?.body).toEqual({
      type: "history",
      channel: "room:1",
      since: { epoch: "e1", offset: 1 },
      limit: 50,
    });
    sent[1]?.reply(ok({ epoch: "e1", offset: 3, publications: [msg(2)] }));
    expect(offsets).toEqual([2, 3]);
  });

  it("subscription - retries a gap's history after a temporary error", () => {
    const { sent, offsets, holes } = gapAfterOne();
    const away = new ServerError("unavailable", "redis unavailable", true);
    sent[1]?.reply({ ok: false, error: away });
    expect(sent).toHaveLength(2);
    vi.advanceTimersByTime(1_000);
    expect(sent[2]?.body).toMatchObject({ type: "history", limit: 50 });
    sent[2]?.reply(ok({ epoch: "e1", offset: 3, publications: [msg(2)] }));
    expect(offsets).toEqual([2, 3]);
    expect(holes).toEqual([]);
  });

  it("subscription - gives a gap up after repeated temporary errors", () => {
    const { sent, offsets } = gapAfterOne();
    const away = new ServerError("unavailable", "redis unavailable", true);
    for (let read = 1; read <= 4; read++) {
      sent[read]?.reply({ ok: false, error: away });
      vi.advanceTimersByTime(1_000);
    }
    expect(sent).toHaveLength(5);
    expect(offsets).toEqual([3]);
  });

  it("subscription - replaces the member list after every resubscribe", () => {
    const sub = new Subscription("room:1", { presence: true }, host());
    const first = scriptedConnection();
    sub.attach(first.connection);
    expect(first.sent[0]?.body).toMatchObject({ presence: true });
    first.sent[0]?.reply(
      ok({
        epoch: "e1",
        offset: 0,
        presence: { members: [{ user: "a", client: "c1" }] },
      }),
    );
    sub.receive({ type: "join", channel: "room:1", user: "b", client: "c2" });
    expect(sub.members.map((m) => m.client)).toEqual(["c1", "c2"]);

    sub.detachConnection();
    const second = scriptedConnection();
    sub.attach(second.connection);
    second.sent[0]?.reply(
      ok({
        epoch: "e1",
        offset: 0,
        recovered: true,
        presence: { members: [{ user: "b", client: "c3" }] },
      }),
    );
    expect(sub.members).toEqual([{ user: "b", client: "c3" }]);
  });

  it("subscription - unsubscribe ends it and tells the node", async () => {
    const sub = new Subscription("room:1", {}, host());
    const { connection, sent } = scriptedConnection();
    const messages = vi.fn();
    sub.on("message", messages);
    sub.attach(connection);
    sent[0]?.reply(ok({ epoch: "e1", offset: 0 }));

    const left = sub.unsubscribe();
    expect(sub.state).toBe("unsubscribed");
    sub.receive(msg(1));
    expect(messages).not.toHaveBeenCalled();
    expect(sent[1]?.body).toEqual({ type: "unsubscribe", channel: "room:1" });
    sent[1]?.reply(ok(undefined));
    await left;
    await expect(sub.ready()).rejects.toMatchObject({
      code: "SB_ERR_UNSUBSCRIBED",
    });
  });
});
