import { existsSync } from "node:fs";
import { createServer } from "node:net";

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestClient, http, waitUntil } from "../../server/test/helpers.js";
import { startRedis, type OwnRedis } from "../../server/test/redis-server.js";
import { launch, signalAll } from "./cli-process.js";
import { NGINX, NGINX_REQUIRED, NO_NGINX, freePort } from "./nginx-process.js";

/** Fast drains, so a stopped cluster exits within a second or two. */
const FAST = [
  "--log-level",
  "error",
  "--drain-delay",
  "100ms",
  "--drain-window",
  "200ms",
  "--drain-timeout",
  "2s",
];

let redis: OwnRedis;

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(() => {
  // A cluster that is still up is stopped at once: it stops its nodes.
  signalAll("SIGTERM");
  signalAll("SIGTERM");
});

afterAll(async () => {
  await redis.stop();
});

/** `switchboard cluster` with two nodes from `base` and no nginx. */
function twoNodes(base: number, extra: string[] = []) {
  return launch([
    "cluster",
    "--nodes",
    "2",
    "--no-nginx",
    "--base-port",
    String(base),
    "--redis-url",
    redis.url,
    ...extra,
  ]);
}

/**
 * Two consecutive free loopback ports, drawn below Linux's ephemeral range
 * (32768 and up): there, any outgoing connection of a busy machine may
 * hold the second one.
 */
async function freePair(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if ((await isFree(port)) && (await isFree(port + 1))) return port;
  }
  throw new Error("no two consecutive free ports");
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids a cluster printed: the nodes', then nginx's. */
function pids(stdout: string): number[] {
  return [...stdout.matchAll(/pid (\d+)/g)].map((match) => Number(match[1]));
}

describe("switchboard cluster", () => {
  it("prints usage for --help and exits 0", async () => {
    const cluster = launch(["cluster", "--help"]);
    expect((await cluster.done).code).toBe(0);
    expect(cluster.output()).toMatch(/^Usage: switchboard cluster/);
    for (const flag of ["--nodes", "--base-port", "--port", "--redis-url"]) {
      expect(cluster.output()).toContain(flag);
    }
  });

  it.each([
    [["--nodes", "0"], "switchboard: --nodes must be 1 to 64, got 0"],
    [["--nodes", "two"], 'switchboard: --nodes must be an integer, got "two"'],
    [
      ["--nodes", "3", "--base-port", "65534"],
      "switchboard: --base-port must leave room for 3 ports",
    ],
    [
      ["--port", "8082"],
      "switchboard: --port 8082 is one of the nodes' ports (8081-8083)",
    ],
    [
      ["--engine", "memory"],
      "switchboard: cluster runs the redis engine, got --engine memory",
    ],
    [
      ["--heartbeat", "soon"],
      'switchboard: --heartbeat must be a duration like 25s, got "soon"',
    ],
    [["--host", "0.0.0.0"], "switchboard: open mode on 0.0.0.0 is refused"],
    [["--bogus"], "switchboard: Unknown option '--bogus'"],
    [
      ["--nginx", "/nonexistent/nginx"],
      "switchboard: --nginx /nonexistent/nginx is not an executable file",
    ],
  ])("refuses %j with one line and exit 2", async (args, line) => {
    const cluster = launch(["cluster", ...args]);
    expect((await cluster.done).code).toBe(2);
    expect(cluster.errors().startsWith(line)).toBe(true);
    expect(cluster.errors().trimEnd().split("\n")).toHaveLength(1);
    expect(cluster.output()).toBe("");
  });

  it("runs nodes behind nginx and drains them on SIGTERM", async (context) => {
    if (!NGINX) {
      if (NGINX_REQUIRED) throw new Error(`CI=true: ${NO_NGINX}`);
      context.skip(NO_NGINX);
    }
    const [base, port] = await Promise.all([freePair(), freePort()]);
    const cluster = launch([
      "cluster",
      "--nodes",
      "2",
      "--base-port",
      String(base),
      "--port",
      String(port),
      "--redis-url",
      redis.url,
      "--api-key",
      "cluster-key",
      ...FAST,
    ]);
    await waitUntil(
      () => cluster.output().includes("Switchboard cluster listening on"),
      15_000,
      `cluster up: ${cluster.errors()}`,
    );
    expect(cluster.output()).toContain(
      `Switchboard cluster listening on ws://127.0.0.1:${port}/ws: nginx`,
    );
    expect(cluster.output()).toContain(
      `node-1 listening on ws://127.0.0.1:${base}/ws`,
    );
    expect(cluster.output()).toContain(
      `node-2 listening on ws://127.0.0.1:${base + 1}/ws`,
    );
    const [node1, node2, nginx] = pids(cluster.output());

    // Through nginx: the WebSocket, and the API with the passed-on key.
    const clients = await Promise.all(
      [0, 1, 2, 3].map(async () => {
        const client = await TestClient.connect(port);
        await client.subscribe("cluster:room");
        return client;
      }),
    );
    const nodes = new Set(clients.map((c) => c.connectResult!.node));
    expect(nodes).toEqual(new Set(["node-1", "node-2"]));
    const denied = await http(port, "POST", "/api/publish", {
      body: { channel: "cluster:room", data: 1 },
    });
    expect(denied.status).toBe(401);
    const published = await http(port, "POST", "/api/publish", {
      body: { channel: "cluster:room", data: "hi" },
      headers: { Authorization: "Bearer cluster-key" },
    });
    expect(published.status).toBe(200);
    await Promise.all(
      clients.map((client) => client.waitForMessage("cluster:room", "hi")),
    );

    cluster.child.kill("SIGTERM");
    const closes = await Promise.all(
      clients.map((client) => client.waitForClose(5_000)),
    );
    expect(closes.map((close) => close.code)).toEqual([1001, 1001, 1001, 1001]);
    for (const client of clients) {
      expect(client.pushes.some((frame) => frame.type === "reconnect")).toBe(
        true,
      );
    }
    expect((await cluster.done).code).toBe(0);
    for (const pid of [node1!, node2!, nginx!]) expect(alive(pid)).toBe(false);
    const config = /config (\S+)\)/.exec(cluster.output())![1]!;
    expect(existsSync(config)).toBe(false);
    expect(await isFree(port)).toBe(true);
  }, 30_000);

  it("says it runs the nodes only when nginx is not on PATH", async () => {
    const base = await freePair();
    const cluster = launch(
      [
        "cluster",
        "--nodes",
        "2",
        "--base-port",
        String(base),
        "--redis-url",
        redis.url,
        ...FAST,
      ],
      { PATH: "/nonexistent" },
    );
    await waitUntil(
      () => cluster.output().includes("Switchboard cluster"),
      15_000,
      `cluster up: ${cluster.errors()}`,
    );
    expect(cluster.errors()).toBe(
      "switchboard: nginx is not on PATH: running the nodes only" +
        ` (ports ${base}-${base + 1})\n`,
    );
    expect(cluster.output()).toContain("2 nodes, no nginx in front");
    const client = await TestClient.connect(base + 1);
    expect(client.connectResult!.node).toBe("node-2");

    cluster.child.kill("SIGINT");
    expect((await cluster.done).code).toBe(0);
    for (const pid of pids(cluster.output())) expect(alive(pid)).toBe(false);
  }, 30_000);

  it("exits 1 with one line when a port is in use", async () => {
    const base = await freePair();
    const blocker = createServer();
    await new Promise<void>((resolve) =>
      blocker.listen(base + 1, "127.0.0.1", resolve),
    );
    try {
      const cluster = twoNodes(base);
      expect((await cluster.done).code).toBe(1);
      expect(cluster.errors()).toBe(
        `switchboard: 127.0.0.1:${base + 1} is in use\n`,
      );
      expect(cluster.output()).toBe("");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("stops at once with status 1 on a second signal", async () => {
    const base = await freePair();
    const cluster = twoNodes(base, [
      "--log-level",
      "error",
      "--drain-delay",
      "10s",
      "--drain-timeout",
      "30s",
    ]);
    await waitUntil(
      () => cluster.output().includes("Switchboard cluster"),
      15_000,
      "cluster up",
    );
    expect(cluster.errors()).toBe("");
    const started = Date.now();
    cluster.child.kill("SIGTERM");
    await waitUntil(() => cluster.errors().includes("drain"), 5_000);
    cluster.child.kill("SIGTERM");
    expect((await cluster.done).code).toBe(1);
    expect(Date.now() - started).toBeLessThan(3_000);
    await waitUntil(
      () => pids(cluster.output()).every((pid) => !alive(pid)),
      3_000,
      "nodes gone",
    );
  }, 30_000);
});
