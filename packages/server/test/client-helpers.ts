/**
 * Small real-socket helpers for the server tests: a `ws` client that
 * collects every frame, replies by id, bounded waits, raw upgrades and
 * HTTP calls. No mocks: everything talks to a node over loopback.
 */
import { randomBytes } from "node:crypto";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";

import WebSocket from "ws";

export const SUBPROTOCOL = "switchboard.v1";

/** Any frame the server sends. */
export interface Frame {
  readonly type: string;
  readonly id?: number;
  readonly [field: string]: unknown;
}

/** How a socket ended, as the client saw it. */
export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/** Options of `openClient`. */
export interface OpenOptions {
  readonly path?: string;
  /** Subprotocols to offer; defaults to switchboard.v1. */
  readonly protocols?: string[];
  readonly headers?: Record<string, string>;
  /** Answer server pings (ws default true). */
  readonly autoPong?: boolean;
}

const DEFAULT_WAIT_MS = 5_000;

const open = new Set<TestClient>();

interface Waiter {
  readonly test: (frame: Frame) => boolean;
  readonly resolve: (frame: Frame) => void;
  /** The socket closed with `code` first. */
  readonly fail: (code: number) => void;
}

/** A `ws` client that keeps every frame it receives, in order. */
export class TestClient {
  /** Every frame received, in arrival order. */
  readonly frames: Frame[] = [];
  /** Resolves when the socket closes. */
  readonly closed: Promise<Closed>;
  /** The close once it happened. */
  closedWith: Closed | undefined;
  /** Pings received from the server. */
  pings = 0;
  private nextId = 1;
  private waiters: Waiter[] = [];

  constructor(readonly ws: WebSocket) {
    open.add(this);
    ws.on("message", (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as Frame;
      this.frames.push(frame);
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.test(frame)) return true;
        waiter.resolve(frame);
        return false;
      });
    });
    ws.on("ping", () => (this.pings += 1));
    ws.on("error", () => undefined);
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        open.delete(this);
        this.closedWith = { code, reason: reason.toString() };
        resolve(this.closedWith);
        const waiters = this.waiters;
        this.waiters = [];
        for (const waiter of waiters) waiter.fail(code);
      });
    });
  }

  /** Sends a frame as JSON text. */
  send(frame: object): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends a request with a fresh id; resolves with its `ok` or `error`. */
  request(frame: object, timeoutMs = DEFAULT_WAIT_MS): Promise<Frame> {
    const id = this.nextId++;
    const reply = this.waitFor(
      (f) => f.id === id && (f.type === "ok" || f.type === "error"),
      timeoutMs,
      `reply to ${JSON.stringify(frame)}`,
    );
    this.send({ ...frame, id });
    return reply;
  }

  /** Like `request`, but returns the `result` of an `ok` or throws. */
  async call<T = Record<string, unknown>>(frame: object): Promise<T> {
    const reply = await this.request(frame);
    if (reply.type !== "ok") {
      throw new Error(`request failed: ${JSON.stringify(reply)}`);
    }
    return reply.result as T;
  }

  /**
   * The first frame, received before or after the call, that passes
   * `test`; rejects after `timeoutMs`.
   */
  waitFor(
    test: (frame: Frame) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
    what = "frame",
  ): Promise<Frame> {
    const found = this.frames.find(test);
    if (found) return Promise.resolve(found);
    return this.next(test, timeoutMs, what);
  }

  /** The first frame received after the call that passes `test`. */
  next(
    test: (frame: Frame) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
    what = "frame",
  ): Promise<Frame> {
    if (this.closedWith) {
      const { code } = this.closedWith;
      return Promise.reject(new Error(`closed ${code} before ${what}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        test,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
        fail: (code) => {
          clearTimeout(timer);
          reject(new Error(`closed ${code} before ${what}`));
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits until `count` frames pass `test`; returns them all. */
  async waitForCount(
    test: (frame: Frame) => boolean,
    count: number,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<Frame[]> {
    let seen = this.frames.filter(test).length;
    if (seen < count) {
      await this.next(
        (frame) => test(frame) && ++seen >= count,
        timeoutMs,
        `${count} frames`,
      );
    }
    return this.frames.filter(test);
  }

  /** Frames of one push type, optionally of one channel. */
  pushes(type: string, channel?: string): Frame[] {
    return this.frames.filter(
      (f) =>
        f.type === type &&
        f.id === undefined &&
        (channel === undefined || f.channel === channel),
    );
  }

  /** Messages of a channel, in arrival order. */
  messages(channel: string): Frame[] {
    return this.pushes("message", channel);
  }

  /** Resolves with the close, or rejects after `timeoutMs`. */
  waitClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<Closed> {
    return withTimeout(this.closed, timeoutMs, "close");
  }

  /** Closes from the client side and waits for the socket to end. */
  async close(): Promise<Closed> {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closed;
    this.ws.close(1000);
    return this.waitClosed();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Opens a socket to `ws://127.0.0.1:port/ws`; no `connect` yet. */
export function openClient(
  port: number,
  options: OpenOptions = {},
): Promise<TestClient> {
  const ws = new WebSocket(
    `ws://127.0.0.1:${port}${options.path ?? "/ws"}`,
    options.protocols ?? [SUBPROTOCOL],
    { headers: options.headers, autoPong: options.autoPong ?? true },
  );
  const client = new TestClient(ws);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) =>
      reject(new Error(`upgrade refused: ${res.statusCode}`)),
    );
    ws.once("error", reject);
  });
}

/** Options of `connectClient`. */
export interface ConnectOptions extends OpenOptions {
  readonly token?: string;
  readonly session?: string;
}

/** A client after a successful `connect`, with the connect result. */
export interface Connected {
  readonly client: TestClient;
  readonly result: Record<string, unknown> & { client: string };
}

/** Opens a socket and sends `connect`; resolves after its `ok`. */
export async function connectClient(
  port: number,
  options: ConnectOptions = {},
): Promise<Connected> {
  const client = await openClient(port, options);
  const result = await client.call<Connected["result"]>({
    type: "connect",
    token: options.token,
    session: options.session,
  });
  return { client, result };
}

/** Connects and subscribes; returns the client and the subscribe result. */
export async function subscribedClient(
  port: number,
  channel: string,
  options: ConnectOptions & { presence?: boolean } = {},
): Promise<{
  client: TestClient;
  id: string;
  sub: Record<string, unknown> & { epoch: string; offset: number };
}> {
  const { client, result } = await connectClient(port, options);
  const sub = await client.call<{ epoch: string; offset: number }>({
    type: "subscribe",
    channel,
    presence: options.presence,
  });
  return { client, id: result.client, sub };
}

/** Terminates every helper socket still open (for `afterEach`). */
export function terminateAll(): void {
  for (const client of open) client.terminate();
  open.clear();
}

/** What a raw upgrade request got back. */
export interface UpgradeAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/**
 * Sends a hand-made upgrade request and returns the HTTP answer; a 101
 * socket is destroyed at once.
 */
export function rawUpgrade(
  port: number,
  options: { path?: string; headers?: Record<string, string> } = {},
): Promise<UpgradeAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      path: options.path ?? "/ws",
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        ...options.headers,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: "" });
    });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** What an HTTP call got back. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Calls the node's HTTP API over loopback. */
export async function http(
  port: number,
  method: string,
  path: string,
  options: {
    body?: unknown;
    raw?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<HttpAnswer> {
  const body =
    options.raw ??
    (options.body === undefined ? undefined : JSON.stringify(options.body));
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    body,
    headers: {
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...options.headers,
    },
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** Polls `check` every few ms until it is true; rejects after timeoutMs. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs = DEFAULT_WAIT_MS,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${what}`)),
      ms,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
