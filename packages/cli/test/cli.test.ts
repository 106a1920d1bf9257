import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";

import {
  freePort,
  killAll,
  launch,
  run,
  startNode,
  until,
} from "./cli-process.js";

afterEach(killAll);

function configFile(content: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "sb-cli-")), "config.json");
  writeFileSync(path, content);
  return path;
}

describe("switchboard", () => {
  it.each(["start", "publish", "subscribe"])(
    "prints usage for %s --help and exits 0",
    async (command) => {
      const { code, stdout } = await run([command, "--help"]);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`^Usage: switchboard ${command}`));
    },
  );

  it("exits 2 with one line for an unknown command", async () => {
    const { code, stderr } = await run(["launch"]);
    expect(code).toBe(2);
    expect(stderr).toBe('switchboard: unknown command "launch" (see --help)\n');
  });
});

describe("switchboard start", () => {
  it.each([
    [["--bogus"], {}, "switchboard: Unknown option '--bogus'"],
    [
      ["--engine", "redis", "--redis-url", "redis://127.0.0.1:6379/abc"],
      {},
      'switchboard: redisUrl: "redis://127.0.0.1:6379/abc": the path must' +
        " be a database number",
    ],
    [
      ["--port", "http"],
      {},
      'switchboard: --port must be an integer, got "http"',
    ],
    [
      [],
      { SWITCHBOARD_HEARTBEAT: "soon" },
      "switchboard: SWITCHBOARD_HEARTBEAT must be a duration like 25s," +
        ' got "soon"',
    ],
    [
      ["--heartbeat", "1.5"],
      {},
      'switchboard: --heartbeat must be a whole number, got "1.5"',
    ],
    [
      ["--workers", "2"],
      {},
      "switchboard: --workers above 1 needs --engine redis",
    ],
    [
      ["--frame-limit", "1KiB"],
      {},
      "switchboard: frameLimit must be at least maxMessageSize",
    ],
    [
      ["--host", "0.0.0.0"],
      {},
      "switchboard: open mode on 0.0.0.0 is refused: set a token secret," +
        " or insecure (--insecure) to allow it",
    ],
  ] as const)(
    "refuses %j %j with one line and exit 2",
    async (args, env, line) => {
      const { code, stderr } = await run(["start", ...args], env);
      expect(code).toBe(2);
      expect(stderr.startsWith(line)).toBe(true);
      expect(stderr.trimEnd().split("\n")).toHaveLength(1);
    },
  );

  it.each([
    ["{not json", "not valid JSON"],
    ['{"prot": 1}', 'unknown option "prot"'],
    ['{"port": "high"}', 'config port must be an integer, got "high"'],
    [
      '{"namespaces": {"chat": {"historyTtl": "soon"}}}',
      "config namespaces.chat.historyTtl must be a duration like 25s," +
        ' got "soon"',
    ],
    [
      '{"namespaces": {"chat": {"presence": "no"}}}',
      "namespaces.chat.presence must be a boolean",
    ],
  ])("refuses the config file %s with one line", async (content, reason) => {
    const path = configFile(content);
    const { code, stderr } = await run(["start", "--config", path]);
    expect(code).toBe(2);
    expect(stderr).toContain(reason);
    expect(stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  it("takes flags over environment over the config file", async () => {
    const [filePort, envPort, flagPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
    ]);
    const path = configFile(JSON.stringify({ port: filePort }));
    const env = { SWITCHBOARD_PORT: String(envPort) };

    const fromFlag = await startNode(
      ["--config", path, "--port", String(flagPort)],
      env,
    );
    expect(fromFlag.output()).toContain(`127.0.0.1:${flagPort}/ws`);
    fromFlag.child.kill("SIGKILL");

    const fromEnv = await startNode(["--config", path], env);
    expect(fromEnv.output()).toContain(`127.0.0.1:${envPort}/ws`);
    fromEnv.child.kill("SIGKILL");

    const fromFile = await startNode(["--config", path]);
    expect(fromFile.output()).toContain(`127.0.0.1:${filePort}/ws`);
  });

  it("drains on SIGTERM and exits 0", async () => {
    const port = await freePort();
    const node = await startNode([
      "--port",
      String(port),
      "--drain-delay",
      "50ms",
      "--drain-window",
      "50ms",
    ]);
    node.child.kill("SIGTERM");
    expect((await node.done).code).toBe(0);
  });

  it("drains and exits 0 while its Redis has never answered", async () => {
    const [port, nowhere] = await Promise.all([freePort(), freePort()]);
    const node = await startNode([
      "--port",
      String(port),
      "--engine",
      "redis",
      "--redis-url",
      `redis://127.0.0.1:${nowhere}`,
      "--drain-delay",
      "50ms",
    ]);
    node.child.kill("SIGTERM");
    expect((await node.done).code).toBe(0);
  });

  it("exits 1 at once on a second signal", async () => {
    const port = await freePort();
    const node = await startNode(["--port", String(port)]);
    node.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 100));
    node.child.kill("SIGTERM");
    expect((await node.done).code).toBe(1);
  });
});

describe("switchboard publish and subscribe", () => {
  it("carries messages from publish to subscribe", async () => {
    const port = await freePort();
    await startNode(["--port", String(port)]);
    const subscriber = launch([
      "subscribe",
      "room:1",
      "--url",
      `ws://127.0.0.1:${port}/ws`,
      "--count",
      "2",
    ]);
    let stderr = "";
    subscriber.child.stderr!.on("data", (chunk) => (stderr += chunk));
    await until(() => stderr.includes("subscribed to room:1"), "subscribe");
    const url = `http://127.0.0.1:${port}`;
    const first = await run([
      "publish",
      "room:1",
      '{"text":"hi"}',
      "--url",
      url,
    ]);
    const second = await run(["publish", "room:1", '"two"', "--url", url]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ offset: 1 });
    expect(second.code).toBe(0);

    const { code, stdout } = await subscriber.done;
    const epoch = JSON.parse(first.stdout).epoch;
    expect(code).toBe(0);
    expect(stdout).toBe(
      `room:1 ${epoch}:1 {"text":"hi"}\nroom:1 ${epoch}:2 "two"\n`,
    );
  });

  it("exits 1 when the server ends the subscription", async () => {
    const port = await freePort();
    const secret = "cli-test-secret-0123456789abcdef";
    await startNode(["--port", String(port), "--token-secret", secret]);
    const token = await new SignJWT({ sb: { subscribe: ["room:*"] } })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("carol")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
    const subscriber = launch([
      "subscribe",
      "room:5",
      "--url",
      `ws://127.0.0.1:${port}/ws`,
      "--token",
      token,
    ]);
    let stderr = "";
    subscriber.child.stderr!.on("data", (chunk) => (stderr += chunk));
    await until(() => stderr.includes("subscribed to room:5"), "subscribe");

    const response = await fetch(`http://127.0.0.1:${port}/api/unsubscribe`, {
      method: "POST",
      body: JSON.stringify({ user: "carol", channel: "room:5" }),
    });
    expect(await response.json()).toEqual({ unsubscribed: 1 });
    expect((await subscriber.done).code).toBe(1);
    expect(stderr).toContain(
      "switchboard: unsubscribed: server unsubscribed by the server",
    );
  });

  it("refuses a message that is not JSON", async () => {
    const { code, stderr } = await run(["publish", "room:1", "hello"]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "switchboard: message must be JSON, got hello; quote a string as" +
        " '\"text\"'\n",
    );
  });

  it("reports a refused publish with the node's reason", async () => {
    const port = await freePort();
    await startNode(["--port", String(port), "--api-key", "secret"]);
    const url = `http://127.0.0.1:${port}`;
    const refused = await run(["publish", "room:1", "1", "--url", url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      "publish failed: 401 missing or wrong API key\n",
    );
    const allowed = await run([
      "publish",
      "room:1",
      "1",
      "--url",
      url,
      "--api-key",
      "secret",
    ]);
    expect(allowed.code).toBe(0);
  });
});
