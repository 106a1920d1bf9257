import {
  ClosedError,
  SwitchboardClient,
  UnauthorizedError,
} from "@switchboard/client";
import { createNode, type SwitchboardNode } from "@switchboard/server";
import { mintToken } from "@switchboard/server-sdk";
import { createElement, StrictMode } from "react";
import { renderToString } from "react-dom/server";
import { afterEach, describe, expect, it, vi } from "vitest";

import { ClientHub } from "../src/hub.js";
import {
  MissingProviderError,
  SwitchboardProvider,
  useChannel,
  useConnectionState,
  usePresence,
} from "../src/index.js";

const nodes: SwitchboardNode[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(nodes.splice(0).map((node) => node.close()));
});

async function startNode(tokenSecret?: string): Promise<string> {
  const node = createNode({ port: 0, tokenSecret });
  nodes.push(node);
  const { port } = await node.listen();
  return `ws://127.0.0.1:${port}/ws`;
}

const SECRET = "a-token-secret-of-the-react-tests-32+";

function tokenOf(user: string): Promise<string> {
  return mintToken({
    user,
    secret: SECRET,
    grants: { subscribe: ["room:*"], publish: ["room:*"] },
  });
}

function users(hub: ClientHub, channel: string): string[] {
  return hub.members(channel).map((member) => member.user);
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function Room() {
  const status = useChannel("room:1", () => undefined);
  const members = usePresence("room:1");
  const state = useConnectionState();
  return createElement("p", null, `${state} ${status} ${members.length}`);
}

describe("server rendering", () => {
  it("renders the initial values and never constructs a WebSocket", () => {
    const constructed = vi.fn();
    vi.stubGlobal(
      "WebSocket",
      class {
        constructor() {
          constructed();
        }
      },
    );
    const subscribe = vi.spyOn(SwitchboardClient.prototype, "subscribe");
    const html = renderToString(
      createElement(
        StrictMode,
        null,
        createElement(SwitchboardProvider, {
          url: "ws://127.0.0.1:1/ws",
          token: () => "t",
          children: createElement(Room),
        }),
      ),
    );
    vi.unstubAllGlobals();
    expect(html).toBe("<p>connecting idle 0</p>");
    expect(constructed).not.toHaveBeenCalled();
    expect(subscribe).not.toHaveBeenCalled();
  });

  it("throws a clear error outside a provider", () => {
    const render = () => renderToString(createElement(Room));
    expect(render).toThrow(MissingProviderError);
    expect(render).toThrow(
      "useChannel must be used inside a <SwitchboardProvider>",
    );
  });
});

describe("ClientHub", () => {
  it("shares one wire subscription, survives a StrictMode probe", async () => {
    const hub = new ClientHub();
    hub.url = await startNode();
    const subscribe = vi.spyOn(SwitchboardClient.prototype, "subscribe");
    const received: unknown[] = [];
    hub.onMessage("room:1", (message) => received.push(message.data));

    // Mount, the probe's unmount, mount again: children first, as React
    // runs effects.
    hub.acquire("room:1");
    hub.acquire("room:1");
    hub.start();
    hub.release("room:1");
    hub.release("room:1");
    hub.stop();
    hub.acquire("room:1");
    hub.acquire("room:1");
    hub.start();

    await until(() => hub.status("room:1") === "subscribed", "subscribed");
    const client = hub.current!;
    expect(subscribe).toHaveBeenCalledTimes(1);
    await client.publish("room:1", "hello");
    await until(() => received.length === 1, "the message");
    expect(hub.members("room:1")).toHaveLength(1);

    hub.release("room:1");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(client.getSubscription("room:1")?.state).toBe("subscribed");
    hub.release("room:1");
    await until(() => client.getSubscription("room:1") === undefined, "gone");
    hub.stop();
    await until(() => client.state === "closed", "closed");
    expect(hub.current).toBeUndefined();
  });

  it("calls the latest token function the provider was given", async () => {
    const hub = new ClientHub();
    hub.url = await startNode();
    const calls: string[] = [];
    hub.setToken(() => {
      calls.push("first");
      return "";
    });
    hub.start();
    await until(() => hub.state() === "connected", "connected");
    hub.setToken(() => {
      calls.push("second");
      return "";
    });
    expect(calls).toEqual(["first"]);
    hub.closeClient();
    hub.start();
    await until(() => hub.state() === "connected", "connected again");
    expect(calls).toEqual(["first", "second"]);
    hub.closeClient();
  });

  it("replaces the client when the string token changes", async () => {
    const hub = new ClientHub();
    hub.url = await startNode(SECRET);
    hub.setToken(await tokenOf("alice"));
    hub.acquire("room:1");
    hub.start();
    await until(() => users(hub, "room:1").join() === "alice", "alice");
    const first = hub.current!;

    hub.setToken(await tokenOf("bob"));
    await until(() => users(hub, "room:1").join() === "bob", "bob");
    expect(first.state).toBe("closed");
    expect(hub.current).not.toBe(first);
    hub.closeClient();
  });

  it("connects with a token that arrives after the first render", async () => {
    const hub = new ClientHub();
    hub.url = await startNode(SECRET);
    hub.setToken(undefined);
    hub.acquire("room:1");
    hub.start();
    await until(() => hub.status("room:1") === "unsubscribed", "refused");

    hub.setToken(await tokenOf("alice"));
    await until(() => hub.status("room:1") === "subscribed", "subscribed");
    expect(users(hub, "room:1")).toEqual(["alice"]);
    hub.closeClient();
  });

  it("holds a publish made before the provider started", async () => {
    const hub = new ClientHub();
    const url = await startNode();
    const received: unknown[] = [];
    hub.onMessage("room:1", (message) => received.push(message.data));
    // A child's mount effects run before its provider's.
    hub.acquire("room:1");
    const published = hub.publish("room:1", "joined");
    hub.setToken(undefined);
    hub.url = url;
    hub.start();
    expect(await published).toMatchObject({ offset: 1 });
    await until(() => received.length === 1, "the message");
    expect(received).toEqual(["joined"]);
    hub.closeClient();
  });

  it("reports a stopped client's channels; a token restarts it", async () => {
    const hub = new ClientHub();
    hub.url = await startNode(SECRET);
    hub.setToken(() => {
      throw new UnauthorizedError("signed out");
    });
    hub.start();
    await until(() => hub.state() === "closed", "closed");

    expect(() => hub.acquire("room:2")).not.toThrow();
    expect(hub.status("room:2")).toBe("unsubscribed");
    expect(() => hub.acquire("room:3")).not.toThrow();
    await expect(hub.publish("room:2", "x")).rejects.toBeInstanceOf(
      ClosedError,
    );

    const token = await tokenOf("carol");
    hub.setToken(() => token);
    await until(() => hub.status("room:2") === "subscribed", "room:2");
    expect(hub.state()).toBe("connected");
    expect(users(hub, "room:3")).toEqual(["carol"]);
    hub.closeClient();
  });
});
