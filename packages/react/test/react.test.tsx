import { SwitchboardClient } from "@switchboard/client";
import { createNode, type SwitchboardNode } from "@switchboard/server";
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

async function startNode(): Promise<string> {
  const node = createNode({ port: 0 });
  nodes.push(node);
  const { port } = await node.listen();
  return `ws://127.0.0.1:${port}/ws`;
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
  it("shares one wire subscription and survives a StrictMode probe", async () => {
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
    hub.token = () => {
      calls.push("first");
      return "";
    };
    hub.start();
    await until(() => hub.state() === "connected", "connected");
    hub.token = () => {
      calls.push("second");
      return "";
    };
    expect(calls).toEqual(["first"]);
    hub.closeClient();
    hub.start();
    await until(() => hub.state() === "connected", "connected again");
    expect(calls).toEqual(["first", "second"]);
    hub.closeClient();
  });
});
