import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import { SwitchboardClient } from "@switchboard/client";
import {
  ConfigError,
  createNode,
  type SwitchboardNode,
} from "@switchboard/server";
import { WebSocket, WebSocketServer } from "ws";
import { afterEach, describe, expect, it } from "vitest";

import { attachSwitchboard } from "../src/index.js";
import { upgradeStatus } from "./upgrade-status.js";

const opened: { node: SwitchboardNode; server: Server }[] = [];

afterEach(async () => {
  for (const { node, server } of opened.splice(0)) {
    await node.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A node and a stand-in Next.js (pages and a hot-reload socket). */
async function serve(
  options: {
    api?: boolean;
    taken?: boolean;
    ignore?: boolean;
  } = {},
) {
  const node = createNode({ port: 0 });
  const server = createServer();
  const hotReload = new WebSocketServer({ noServer: true });
  const nextUpgrades: string[] = [];
  attachSwitchboard(server, {
    node,
    api: options.api,
    handle: (req, res) => res.end(`next ${req.url}`),
    upgrade: (req, socket, head) => {
      nextUpgrades.push(req.url!);
      if (options.taken === false) return false;
      // As Next.js does with a path it does not serve: settles, socket left.
      if (options.ignore) return Promise.resolve();
      hotReload.handleUpgrade(req, socket, head, (ws) => ws.send("hot"));
      return true;
    },
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve()),
  );
  opened.push({ node, server });
  const { port } = server.address() as AddressInfo;
  return { node, server, port, nextUpgrades };
}

describe("attachSwitchboard", () => {
  it("gives /ws to the node, /_next/ to Next.js, 404 to the rest", async () => {
    const { port, nextUpgrades, server } = await serve();

    const client = new SwitchboardClient({ url: `ws://127.0.0.1:${port}/ws` });
    const room = client.subscribe("room:1");
    await client.connect();
    await room.ready();
    expect(await client.publish("room:1", "hi")).toMatchObject({ offset: 1 });
    await client.close();

    const hot = new WebSocket(`ws://127.0.0.1:${port}/_next/hmr?id=1`);
    const first = await new Promise((resolve, reject) => {
      hot.once("message", (data) => resolve(String(data)));
      hot.once("error", reject);
    });
    hot.close();
    expect(first).toBe("hot");
    expect(nextUpgrades).toEqual(["/_next/hmr?id=1"]);

    expect(await upgradeStatus(port, "/foo")).toBe(404);
    expect(await upgradeStatus(port, "/_next/foo")).toBe(404);
    expect(nextUpgrades).toHaveLength(1);
    expect(server.listenerCount("upgrade")).toBe(1);

    const page = await fetch(`http://127.0.0.1:${port}/room/1`);
    expect(await page.text()).toBe("next /room/1");
  });

  it("answers 404 when Next.js does not take the upgrade", async () => {
    const { port, nextUpgrades } = await serve({ taken: false });
    expect(await upgradeStatus(port, "/_next/hmr")).toBe(404);
    expect(nextUpgrades).toEqual(["/_next/hmr"]);
  });

  it("answers 404 to a socket Next.js settled without taking", async () => {
    const { port, nextUpgrades, server } = await serve({ ignore: true });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        upgradeStatus(port, `/_next/webpack-hmr?i=${i}`),
      ),
    );
    expect(statuses).toEqual(Array(20).fill(404));
    expect(nextUpgrades).toHaveLength(20);
    const open = () =>
      new Promise<number>((resolve, reject) =>
        server.getConnections((error, count) =>
          error ? reject(error) : resolve(count),
        ),
      );
    const deadline = Date.now() + 5_000;
    while ((await open()) > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await open()).toBe(0);
  });

  it("serves the node's HTTP API first only with api", async () => {
    const without = await serve();
    const page = await fetch(`http://127.0.0.1:${without.port}/api/channels`);
    expect(await page.text()).toBe("next /api/channels");

    const withApi = await serve({ api: true });
    const api = await fetch(`http://127.0.0.1:${withApi.port}/api/channels`);
    expect(await api.json()).toEqual({ channels: [] });
    const other = await fetch(`http://127.0.0.1:${withApi.port}/about`);
    expect(await other.text()).toBe("next /about");
  });

  it("refuses a server that already has an upgrade listener", () => {
    const server = createServer();
    server.on("upgrade", () => undefined);
    expect(() =>
      attachSwitchboard(server, {
        node: createNode(),
        handle: () => undefined,
      }),
    ).toThrow(ConfigError);
  });
});
