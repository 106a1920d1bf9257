import { afterEach, describe, expect, it } from "vitest";

import type { SwitchboardNode } from "../src/index.js";
import {
  ALL_GRANTS,
  TestClient,
  anonUser,
  http,
  mintToken,
  startNode,
  stopAll,
  subscribedClient,
  waitUntil,
  type ServerFrame,
} from "./helpers.js";

const SECRET = "presence-test-secret-0123456789abcdef";

afterEach(stopAll);

function token(sub: string): Promise<string> {
  return mintToken(SECRET, { sub, sb: ALL_GRANTS });
}

const isPresencePush = (f: ServerFrame) =>
  (f.type === "join" || f.type === "leave") && f.id === undefined;

/**
 * Publishes a marker on `channel` and waits until `client` has it. Frames
 * a connection gets are ordered, so anything sent before the marker has
 * arrived by then.
 */
async function settle(
  node: SwitchboardNode,
  channel: string,
  ...clients: TestClient[]
): Promise<void> {
  const { offset } = await node.publish(channel, { marker: true });
  await Promise.all(
    clients.map((client) =>
      client.waitFor(
        (f) =>
          f.type === "message" && f.channel === channel && f.offset === offset,
      ),
    ),
  );
}

function byClient(a: { client: string }, b: { client: string }): number {
  return a.client < b.client ? -1 : a.client > b.client ? 1 : 0;
}

describe("presence", () => {
  it("lists every client with its token sub as the user", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const channel = "room:list";
    const alice = await subscribedClient(port, channel, {
      token: await token("alice"),
    });
    const bob = await subscribedClient(port, channel, {
      token: await token("bob"),
    });
    const result = await alice.client.call<{ members: unknown[] }>("presence", {
      channel,
    });
    expect(
      [...(result.members as { client: string }[])].sort(byClient),
    ).toEqual(
      [
        { user: "alice", client: alice.id },
        { user: "bob", client: bob.id },
      ].sort(byClient),
    );
    expect(result).not.toHaveProperty("truncated");
  });

  it("lists an anonymous client as anon: + session hash", async () => {
    const { port } = await startNode();
    const channel = "room:anon";
    const session = "session-one-0001";
    const member = await subscribedClient(port, channel, { session });
    const result = await member.client.call("presence", { channel });
    expect(result).toEqual({
      members: [{ user: anonUser(session), client: member.id }],
    });
    expect(JSON.stringify(result)).not.toContain(session);
  });

  it("puts the member snapshot in the subscribe reply", async () => {
    const { port } = await startNode();
    const channel = "room:snapshot";
    const first = await subscribedClient(port, channel, { session: "s-1" });
    const second = await subscribedClient(port, channel, {
      session: "s-2",
      presence: true,
    });
    const snapshot = second.sub.presence as { members: { client: string }[] };
    expect([...snapshot.members].sort(byClient)).toEqual(
      [
        { user: anonUser("s-1"), client: first.id },
        { user: anonUser("s-2"), client: second.id },
      ].sort(byClient),
    );
    expect(first.sub).not.toHaveProperty("presence");
  });

  it("pushes join and leave to presence subscribers", async () => {
    const { node, port } = await startNode();
    const channel = "room:joinleave";
    const watcher = await subscribedClient(port, channel, {
      session: "watcher",
      presence: true,
    });
    const guest = await subscribedClient(port, channel, { session: "guest" });
    const join = await watcher.client.waitFor((f) => f.type === "join");
    expect(join).toEqual({
      type: "join",
      channel,
      user: anonUser("guest"),
      client: guest.id,
    });

    await guest.client.close();
    const leave = await watcher.client.waitFor((f) => f.type === "leave");
    expect(leave).toEqual({
      type: "leave",
      channel,
      user: anonUser("guest"),
      client: guest.id,
    });
    await settle(node, channel, watcher.client);
    expect(watcher.client.frames.filter(isPresencePush)).toEqual([join, leave]);
  });

  it("sends one join and one leave per user, not per connection", async () => {
    const { node, port } = await startNode({ tokenSecret: SECRET });
    const channel = "room:peruser";
    const watcher = await subscribedClient(port, channel, {
      token: await token("watcher"),
      presence: true,
    });
    const carolToken = await token("carol");
    const phone = await subscribedClient(port, channel, { token: carolToken });
    const laptop = await subscribedClient(port, channel, { token: carolToken });
    await settle(node, channel, watcher.client);
    expect(watcher.client.frames.filter(isPresencePush)).toEqual([
      { type: "join", channel, user: "carol", client: phone.id },
    ]);

    await phone.client.close();
    await waitUntil(() => node.connectionCount === 2);
    await settle(node, channel, watcher.client);
    expect(watcher.client.frames.filter(isPresencePush)).toHaveLength(1);
    const members = await watcher.client.call<{ members: unknown[] }>(
      "presence",
      { channel },
    );
    expect(members.members).toContainEqual({
      user: "carol",
      client: laptop.id,
    });
    expect(members.members).toHaveLength(2);

    await laptop.client.close();
    const leave = await watcher.client.waitFor((f) => f.type === "leave");
    expect(leave).toEqual({
      type: "leave",
      channel,
      user: "carol",
      client: laptop.id,
    });
  });

  it("counts two connections of one session as one user", async () => {
    const { node, port } = await startNode();
    const channel = "room:session";
    const watcher = await subscribedClient(port, channel, {
      session: "w",
      presence: true,
    });
    const a = await subscribedClient(port, channel, { session: "shared" });
    const b = await subscribedClient(port, channel, { session: "shared" });
    await settle(node, channel, watcher.client);
    expect(watcher.client.frames.filter(isPresencePush)).toEqual([
      { type: "join", channel, user: anonUser("shared"), client: a.id },
    ]);
    expect(b.id).not.toBe(a.id);
  });

  it("replaces a vanished session's entry with no leave or join", async () => {
    const { node, port } = await startNode({ presenceTtl: 5_000 });
    const channel = "room:return";
    const watcher = await subscribedClient(port, channel, {
      session: "w",
      presence: true,
    });
    const first = await subscribedClient(port, channel, { session: "phone" });
    first.client.terminate();
    await waitUntil(() => node.connectionCount === 1);
    const again = await subscribedClient(port, channel, { session: "phone" });
    await settle(node, channel, watcher.client);

    expect(watcher.client.frames.filter(isPresencePush)).toEqual([
      { type: "join", channel, user: anonUser("phone"), client: first.id },
    ]);
    const { members } = await watcher.client.call<{ members: unknown[] }>(
      "presence",
      { channel },
    );
    expect(members).toContainEqual({
      user: anonUser("phone"),
      client: again.id,
    });
    expect(members).toHaveLength(2);
  });

  it("sends the leave of a vanished session after presenceTtl", async () => {
    const { node, port } = await startNode({ presenceTtl: 300 });
    const channel = "room:gone";
    const watcher = await subscribedClient(port, channel, {
      session: "w",
      presence: true,
    });
    const gone = await subscribedClient(port, channel, { session: "gone" });
    gone.client.terminate();
    await waitUntil(() => node.connectionCount === 1);
    const { members } = await watcher.client.call<{ members: unknown[] }>(
      "presence",
      { channel },
    );
    expect(members).toHaveLength(2);

    const leave = await watcher.client.waitFor((f) => f.type === "leave");
    expect(leave).toEqual({
      type: "leave",
      channel,
      user: anonUser("gone"),
      client: gone.id,
    });
  });

  it("sends the leave of a cleanly closed client at once", async () => {
    const { port } = await startNode({ presenceTtl: 60_000 });
    const channel = "room:bye";
    const watcher = await subscribedClient(port, channel, {
      session: "w",
      presence: true,
    });
    const guest = await subscribedClient(port, channel, { session: "bye" });
    await guest.client.close();
    const leave = await watcher.client.waitFor(
      (f) => f.type === "leave",
      2_000,
    );
    expect(leave).toMatchObject({ user: anonUser("bye"), client: guest.id });
  });

  it("sends no join or leave without presence: true", async () => {
    const { node, port } = await startNode();
    const channel = "room:quiet";
    const quiet = await subscribedClient(port, channel, { session: "q" });
    const guest = await subscribedClient(port, channel, { session: "g" });
    await guest.client.close();
    await waitUntil(() => node.connectionCount === 1);
    await settle(node, channel, quiet.client);
    expect(quiet.client.frames.filter(isPresencePush)).toEqual([]);
  });

  it("stops join and leave pushes above joinLeaveMaxMembers", async () => {
    const { node, port } = await startNode({ joinLeaveMaxMembers: 2 });
    const channel = "room:busy";
    const watcher = await subscribedClient(port, channel, {
      session: "w",
      presence: true,
    });
    const second = await subscribedClient(port, channel, { session: "2" });
    const third = await subscribedClient(port, channel, { session: "3" });
    await settle(node, channel, watcher.client);
    expect(watcher.client.frames.filter(isPresencePush)).toEqual([
      { type: "join", channel, user: anonUser("2"), client: second.id },
    ]);

    await third.client.close();
    const leave = await watcher.client.waitFor((f) => f.type === "leave");
    expect(leave).toEqual({
      type: "leave",
      channel,
      user: anonUser("3"),
      client: third.id,
    });
  });

  it("truncates the list at presenceMaxMembers", async () => {
    const { port } = await startNode({ presenceMaxMembers: 3 });
    const channel = "room:crowd";
    const members = [];
    for (let i = 0; i < 5; i++) {
      members.push(await subscribedClient(port, channel, { session: `${i}` }));
    }
    const result = await members[0]!.client.call<{
      members: { client: string }[];
    }>("presence", { channel });
    expect(result.members).toHaveLength(3);
    expect(result).toMatchObject({ truncated: true });
    const ids = new Set(members.map((m) => m.id));
    for (const member of result.members)
      expect(ids.has(member.client)).toBe(true);

    const viaHttp = await http(port, "GET", `/api/presence?channel=${channel}`);
    expect(viaHttp.status).toBe(200);
    expect(viaHttp.json.members).toHaveLength(3);
    expect(viaHttp.json.truncated).toBe(true);

    const snapshot = await subscribedClient(port, channel, {
      session: "late",
      presence: true,
    });
    expect(snapshot.sub.presence).toMatchObject({ truncated: true });
    expect(
      (snapshot.sub.presence as { members: unknown[] }).members,
    ).toHaveLength(3);
  });

  it("leaves presence on unsubscribe and lists nobody after", async () => {
    const { port } = await startNode();
    const channel = "room:unsub";
    const member = await subscribedClient(port, channel, { session: "u" });
    await member.client.call("unsubscribe", { channel });
    const client = await TestClient.connect(port);
    expect(await client.call("presence", { channel })).toEqual({
      members: [],
    });
  });

  it("lists nobody in a namespace without presence", async () => {
    const { port } = await startNode({
      namespaces: { hidden: { presence: false } },
    });
    const channel = "hidden:room";
    const member = await subscribedClient(port, channel, { presence: true });
    expect(member.sub.presence).toEqual({ members: [] });
    expect(await member.client.call("presence", { channel })).toEqual({
      members: [],
    });
  });
});
