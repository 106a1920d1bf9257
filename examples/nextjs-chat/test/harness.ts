/**
 * Runs the nextjs-chat example for browser tests: builds it once, starts
 * its one-port server (production or `next dev`) on a free loopback port,
 * and drives Debian's Chromium through playwright-core.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";

import {
  chromium,
  type Browser,
  type BrowserContext,
  type Page,
  type WebSocket,
} from "playwright-core";

import { freePort } from "../../../packages/server/test/ports.js";

/** The example's folder. */
export const EXAMPLE_DIR = fileURLToPath(new URL("..", import.meta.url));

const NEXT_BIN = fileURLToPath(
  new URL("../../../node_modules/next/dist/bin/next", import.meta.url),
);

/** Chromium as the rules of this repository start it. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
    ],
  });
}

/** Runs `next build` in the example; rejects with its output on failure. */
export function buildExample(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEXT_BIN, "build"], {
      cwd: EXAMPLE_DIR,
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`next build exited with ${code}:\n${output}`)),
    );
  });
}

/** A running example server. */
export interface App {
  readonly base: string;
  readonly port: number;
  /** The server process's id. */
  readonly pid: number;
  /** Everything the server printed so far. */
  output(): string;
  /** The node's open connections, from its /metrics. */
  connections(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts `node server.mjs` (with `--dev` for `next dev`). */
export async function startApp(
  options: {
    dev?: boolean;
    env?: Record<string, string>;
    preload?: string;
  } = {},
): Promise<App> {
  const port = await freePort();
  const args = [
    ...(options.preload ? ["--import", options.preload] : []),
    "server.mjs",
    ...(options.dev ? ["--dev"] : []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: EXAMPLE_DIR,
    env: {
      ...process.env,
      NEXT_TELEMETRY_DISABLED: "1",
      PORT: String(port),
      HOST: "127.0.0.1",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (output.includes("chat ready on")) resolve();
    };
    child.stdout!.on("data", check);
    child.once("exit", (code) =>
      reject(new Error(`server exited with ${code}:\n${output}`)),
    );
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    port,
    pid: child.pid!,
    output: () => output,
    connections: async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const match = /^switchboard_connections (\d+)/m.exec(text);
      if (!match) throw new Error(`no connection gauge in:\n${text}`);
      return Number(match[1]);
    },
    stop: () => stopChild(child),
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return resolve();
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** A browser context signed in as `user`, through the sign-in cookie. */
export async function signedIn(
  browser: Browser,
  app: App,
  user: string,
  options: { viewport?: { width: number; height: number } } = {},
): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1000, height: 700 },
  });
  // Shorter than a test's own timeout, so a failure names its step.
  context.setDefaultTimeout(10_000);
  await context.addCookies([{ name: "chat_user", value: user, url: app.base }]);
  return context;
}

/** What one page sent and received on its Switchboard sockets. */
export class Wire {
  readonly sockets: WebSocket[] = [];
  readonly sent: Record<string, unknown>[] = [];

  constructor(page: Page) {
    page.on("websocket", (socket) => {
      if (!new URL(socket.url()).pathname.endsWith("/ws")) return;
      this.sockets.push(socket);
      socket.on("framesent", (frame) => {
        if (typeof frame.payload === "string") {
          this.sent.push(JSON.parse(frame.payload));
        }
      });
    });
  }

  /** Sockets to `/ws` not closed yet. */
  get open(): number {
    return this.sockets.filter((socket) => !socket.isClosed()).length;
  }

  /** The frames of one `type` sent, for one channel when given. */
  frames(type: string, channel?: string): Record<string, unknown>[] {
    return this.sent.filter(
      (frame) =>
        frame.type === type &&
        (channel === undefined || frame.channel === channel),
    );
  }
}

/** The texts of the room's delivered messages, in page order. */
export function messageTexts(page: Page): Promise<string[]> {
  return page.getByTestId("message").locator(".text").allTextContents();
}

/** The users listed as here now. */
export async function memberNames(page: Page): Promise<string[]> {
  const items = await page.getByTestId("member").allTextContents();
  return items.map((item) => item.replace(" (you)", "")).sort();
}

/** Types and sends a message from the composer. */
export async function send(page: Page, text: string): Promise<void> {
  await page.getByLabel("Message").fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

/**
 * Opens a room and waits for the live badge; `timeoutMs` covers the first
 * compile of a page under `next dev`.
 */
export async function openRoom(
  page: Page,
  app: App,
  room: string,
  timeoutMs = 15_000,
) {
  await page.goto(`${app.base}/room/${room}`, { timeout: timeoutMs });
  await page
    .getByTestId("connection")
    .filter({ hasText: "Live" })
    .waitFor({ timeout: timeoutMs });
}

/** Replaces `from` with `to` in a file; resolves with the restorer. */
export async function editFile(
  path: string,
  from: string,
  to: string,
): Promise<() => Promise<void>> {
  const original = await readFile(path, "utf8");
  if (!original.includes(from)) throw new Error(`${from} not in ${path}`);
  await writeFile(path, original.replace(from, to));
  return () => writeFile(path, original);
}

/** The files (sockets included) open in process `pid`. */
export function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * The raw answer to an upgrade request to `path`: the status line, or
 * what happened to the socket when there was none within `ms`.
 */
export function rawUpgradeAnswer(
  port: number,
  path: string,
  ms = 5_000,
): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(answer.split("\r\n", 1)[0] || "no answer");
    }, ms);
    socket.on("data", (chunk) => (answer += chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(answer.split("\r\n", 1)[0] || "closed");
    });
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        "Connection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
  });
}

/** Polls `check` until it holds; throws naming `what` after `ms`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
