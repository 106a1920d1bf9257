import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import { afterEach, describe, expect, it } from "vitest";

import {
  ConfigError,
  DEFAULTS,
  createNode,
  resolveOptions,
  type SwitchboardNode,
} from "../src/index.js";
import { TestClient, stopAll } from "./helpers.js";

describe("resolveOptions", () => {
  it("gives every option its documented default", () => {
    const options = resolveOptions();
    expect(options.port).toBe(8080);
    expect(options.host).toBe("127.0.0.1");
    expect(options.heartbeat).toBe(25_000);
    expect(options.frameLimit).toBe(65 * 1024);
    expect(options.open).toBe(true);
    expect(options.maxConnections).toBeGreaterThan(0);
    expect(options.namespaces.get("")).toEqual({
      historySize: DEFAULTS.historySize,
      historyTtl: DEFAULTS.historyTtl,
      presence: true,
      joinLeave: true,
      clientPublish: true,
      anonymousSubscribe: true,
      anonymousPublish: true,
      idempotencyWindow: DEFAULTS.idempotencyWindow,
    });
  });

  it("requires grants by default once tokens are verified", () => {
    const options = resolveOptions({ tokenSecret: "s" });
    expect(options.namespaces.get("")).toMatchObject({
      anonymousSubscribe: false,
      anonymousPublish: false,
    });
  });

  it("derives namespaces from the default namespace entry", () => {
    const options = resolveOptions({
      historySize: 10,
      namespaces: { "": { historySize: 50 }, chat: { presence: false } },
    });
    expect(options.namespaces.get("")?.historySize).toBe(50);
    expect(options.namespaces.get("chat")).toMatchObject({
      historySize: 50,
      presence: false,
    });
  });

  it.each([
    [{ port: 70_000 }, "port must be at most 65535, got 70000"],
    [{ tokenSecrete: "typo" }, 'unknown option "tokenSecrete"'],
    [{ port: -1 }, "port must be a non-negative integer"],
    [{ heartbeat: 1.5 }, "heartbeat must be a non-negative integer"],
    [{ insecure: "yes" }, "insecure must be a boolean"],
    [{ frameLimit: 10 }, "frameLimit must be at least maxMessageSize"],
    [{ path: "ws" }, 'path must start with "/", got "ws"'],
    [
      { tokenSecret: "a", jwksUrl: "http://127.0.0.1/k" },
      "set only one of tokenSecret, tokenPublicKey and jwksUrl",
    ],
    [
      { namespaces: { chat: { presence: "no" } } },
      "namespaces.chat.presence must be a boolean",
    ],
    [
      { namespaces: { chat: { history: 5 } } },
      'namespaces.chat: unknown option "history"',
    ],
    [
      { namespaces: { chat: { historyTtl: -5 } } },
      "namespaces.chat.historyTtl must be a non-negative integer",
    ],
    [{ namespaces: { "a:b": {} } }, 'namespace "a:b" is not a channel prefix'],
  ])("refuses %j with a ConfigError", (options, message) => {
    expect(() => resolveOptions(options as never)).toThrow(
      new ConfigError(message),
    );
  });
});

describe("embedding", () => {
  let node: SwitchboardNode | undefined;
  let server: Server | undefined;

  afterEach(async () => {
    await stopAll();
    await node?.close();
    server?.close();
    node = server = undefined;
  });

  it("serves upgrades routed by the app's own server", async () => {
    node = createNode();
    const own = createServer((request, response) => {
      if (!node!.handleRequest(request, response)) response.end("app");
    });
    server = own;
    own.on("upgrade", (request, socket, head) => {
      if (!node!.handleUpgrade(request, socket, head)) socket.destroy();
    });
    await new Promise<void>((r) => own.listen(0, "127.0.0.1", r));
    const { port } = own.address() as AddressInfo;

    const client = await TestClient.connect(port);
    expect((await client.request("ping")).type).toBe("ok");
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("app");
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await health.json()).toEqual({ status: "ok" });
  });

  it("refuses server-side publishes of bad input", async () => {
    node = createNode();
    await expect(node.publish("a b", 1)).rejects.toMatchObject({
      code: "bad_request",
    });
    await expect(
      node.publish("room:1", "x".repeat(DEFAULTS.maxMessageSize)),
    ).rejects.toMatchObject({ code: "too_large" });
    await expect(node.publish("room:1", 1, { key: "a*" })).rejects.toThrow(
      "invalid key",
    );
    expect(await node.publish("room:1", 1)).toMatchObject({ offset: 1 });
  });
});
