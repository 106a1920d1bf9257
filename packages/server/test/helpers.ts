/**
 * Shared helpers for the server's tests: a real node on a loopback port, a
 * real `ws` client that speaks the protocol, a raw TCP client for frames
 * `ws` refuses to send (bad UTF-8, reserved opcodes, huge headers) and
 * HTTP calls. No mocks: everything talks to a node over loopback.
 *
 * API:
 * - `startNode(options)` -> `{ node, port, stop() }`, with `FAST_TIMERS`
 *   (heartbeat, pongTimeout, connectTimeout) scaled down; `stopAll()`,
 *   an `afterEach` for files that start a node per test
 * - `TestClient.open(port, options)` / `TestClient.connect(port, fields,
 *   options)`: `request`, `call`, `subscribe`, `reply`, `send`, `sendRaw`,
 *   `frames`, `pushes`, `messages`, `waitFor`, `waitForCount`,
 *   `waitForMessage`, `closed`, `closedWith`, `waitForClose`, `close`,
 *   `terminate`; `subscribedClient(port, channel, fields)`,
 *   `closeAll(clients)`, `isMessage(channel)`
 * - `RawClient.open(port)`: `write`, `sendFrame`, `sendJson`, `request`,
 *   `connect`, `frames`, `texts`, `messageOffsets`, `waitForText`,
 *   `waitForClose`, `closeFrame`, `ended`, `response`, `pause`, `resume`,
 *   `terminate`
 * - `rawUpgrade(port, options)`: the HTTP answer to a hand-made upgrade
 * - `encodeFrame`, `frameHeader`, `Opcode`: client frames, byte by byte
 * - `http(port, method, path, options)`: the node's HTTP API
 * - `mintToken(key, claims, alg)`: a signed JWT; `anonUser(session)`
 * - `within(promise, ms, what)`, `waitUntil(check, ms, what)`, `sleep(ms)`,
 *   `inBatches(count, width, task)`
 * - `CapturingLogger`: a `Logger` that keeps every line for assertions
 * - `collectGarbage()`: a full GC, for memory measurements
 */
import { createHash, randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { WebSocket } from "ws";

import {
  createNode,
  type LogFields,
  type Logger,
  type NodeOptions,
  type SwitchboardNode,
} from "../src/index.js";

/** The subprotocol of wire protocol version 1. */
export const SUBPROTOCOL = "switchboard.v1";

/** Timers scaled down so tests stay fast; `startNode` applies them. */
export const FAST_TIMERS = {
  heartbeat: 1_000,
  pongTimeout: 1_000,
  connectTimeout: 2_000,
} as const satisfies NodeOptions;

/** How long helpers wait for a reply, push or close by default, ms. */
export const DEFAULT_WAIT_MS = 5_000;

/** A node listening on 127.0.0.1 at an ephemeral port. */
export interface StartedNode {
  readonly node: SwitchboardNode;
  readonly port: number;
  /** Closes the node; safe to call twice. */
  stop(): Promise<void>;
}

/** Nodes started and not yet stopped. */
const liveNodes = new Set<StartedNode>();

/** Clients whose socket has not closed yet. */
const liveClients = new Set<{ terminate(): void }>();

/**
 * Starts a node on an ephemeral loopback port with `FAST_TIMERS` and
 * `options`.
 */
export async function startNode(
  options: NodeOptions = {},
): Promise<StartedNode> {
  const node = createNode({ ...FAST_TIMERS, port: 0, ...options });
  const { port } = await node.listen();
  const started: StartedNode = {
    node,
    port,
    stop: () => {
      liveNodes.delete(started);
      return node.close();
    },
  };
  liveNodes.add(started);
  return started;
}

/**
 * Terminates every client still open, then stops every node still
 * running: the `afterEach` of files that start a node per test.
 */
export async function stopAll(): Promise<void> {
  for (const client of [...liveClients]) client.terminate();
  liveClients.clear();
  await Promise.all([...liveNodes].map((started) => started.stop()));
}

/** A close as the client saw it. */
export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/**
 * A frame the server sent, parsed. Replies carry `id`; pushes do not.
 * Fields not listed are reachable by index.
 */
export interface ServerFrame {
  readonly type: string;
  readonly id?: number;
  readonly result?: Record<string, unknown>;
  readonly code?: string;
  readonly message?: string;
  readonly temporary?: boolean;
  readonly retryAfter?: number;
  readonly channel?: string;
  readonly epoch?: string;
  readonly offset?: number;
  readonly data?: unknown;
  readonly [field: string]: unknown;
}

/** The `result` of a subscribe answered `ok`. */
export interface SubscribeResult {
  readonly epoch: string;
  readonly offset: number;
  readonly recovered?: boolean;
  readonly publications?: ServerFrame[];
  readonly [field: string]: unknown;
}

/** The `result` of a connect answered `ok`. */
export interface ConnectResult {
  /** The connection's client id. */
  readonly client: string;
  readonly [field: string]: unknown;
}

/** Whether `frame` is a `message` push, of `channel` when one is given. */
export const isMessage =
  (channel?: string) =>
  (frame: ServerFrame): boolean =>
    frame.type === "message" &&
    frame.id === undefined &&
    (channel === undefined || frame.channel === channel);

/** Rejects with a named timeout unless `promise` settles within `ms`. */
export function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms: ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` every 10 ms until it is true; rejects after `ms`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  ms = DEFAULT_WAIT_MS,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${what}`);
    }
    await sleep(10);
  }
}

/** Resolves after `ms` (at once when `ms` is not positive). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Runs `task` for 0..count-1, at most `width` at a time, in order. */
export async function inBatches<T>(
  count: number,
  width: number,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = [];
  for (let first = 0; first < count; first += width) {
    const batch = [];
    for (let i = first; i < Math.min(count, first + width); i++) {
      batch.push(task(i));
    }
    results.push(...(await Promise.all(batch)));
  }
  return results;
}

interface Waiter<T> {
  readonly match: (value: T) => boolean;
  readonly resolve: (value: T) => void;
}

/** Items that arrive over time, and waits for the first that matches. */
class Inbox<T> {
  readonly items: T[] = [];
  private waiters: Waiter<T>[] = [];

  push(item: T): void {
    this.items.push(item);
    this.offer(item);
  }

  /** Hands `item` to the waiters that match, without keeping it. */
  offer(item: T): void {
    this.waiters = this.waiters.filter((waiter) => {
      if (!waiter.match(item)) return true;
      waiter.resolve(item);
      return false;
    });
  }

  /** The first item, received or still to come, that matches. */
  find(match: (item: T) => boolean): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return this.next(match);
  }

  /** The first item still to come that matches. */
  next(match: (item: T) => boolean): Promise<T> {
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }
}

/** Options of a `TestClient` socket. */
export interface ClientOptions {
  /** The URL path. @default "/ws" */
  path?: string;
  /** Offered subprotocols; `[]` offers none. @default ["switchboard.v1"] */
  protocols?: string[];
  /** Offer permessage-deflate. @default false */
  perMessageDeflate?: boolean;
  headers?: Record<string, string>;
  /** Answer the server's pings. @default true */
  autoPong?: boolean;
}

/**
 * A real `ws` client that keeps every frame it receives, in order. Replies
 * are matched by `id`; waits reject when the socket closes first.
 */
export class TestClient {
  /** Every frame received, in arrival order. */
  readonly frames: ServerFrame[];
  /** Resolves when the socket closes (code 1006 when no frame came). */
  readonly closed: Promise<Closed>;
  /** Set once the socket has closed. */
  closedWith: Closed | undefined;
  /** The `connect` result, once `connect` succeeded. */
  connectResult: ConnectResult | undefined;
  /** Pings received from the server. */
  pings = 0;

  private nextId = 1;
  private readonly inbox = new Inbox<ServerFrame>();

  private constructor(readonly ws: WebSocket) {
    this.frames = this.inbox.items;
    liveClients.add(this);
    ws.on("error", () => {
      // A socket error ends in 'close', which `closed` reports.
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) throw new Error("the server sent a binary frame");
      this.inbox.push(JSON.parse(String(data)) as ServerFrame);
    });
    ws.on("ping", () => (this.pings += 1));
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        liveClients.delete(this);
        this.closedWith = { code, reason: String(reason) };
        resolve(this.closedWith);
      });
    });
  }

  /** Opens a socket to 127.0.0.1:`port`; no protocol frame is sent yet. */
  static open(port: number, options: ClientOptions = {}): Promise<TestClient> {
    const url = `ws://127.0.0.1:${port}${options.path ?? "/ws"}`;
    const ws = new WebSocket(url, options.protocols ?? [SUBPROTOCOL], {
      perMessageDeflate: options.perMessageDeflate ?? false,
      headers: options.headers,
      autoPong: options.autoPong ?? true,
    });
    const client = new TestClient(ws);
    return within(
      new Promise((resolve, reject) => {
        ws.once("open", () => resolve(client));
        ws.once("unexpected-response", (_, response) =>
          reject(new Error(`upgrade refused: ${response.statusCode}`)),
        );
        ws.once("close", (code) =>
          reject(new Error(`closed ${code} before open`)),
        );
      }),
      DEFAULT_WAIT_MS,
      `open ${url}`,
    );
  }

  /**
   * Opens a socket and sends `connect` with `fields`; resolves once it is
   * answered `ok`, rejects on an error reply or a close.
   */
  static async connect(
    port: number,
    fields: Record<string, unknown> = {},
    options: ClientOptions = {},
  ): Promise<TestClient> {
    const client = await TestClient.open(port, options);
    client.connectResult = await client.call<ConnectResult>("connect", fields);
    return client;
  }

  /** Sends a request with a fresh id; resolves with its reply. */
  request(
    type: string,
    fields: Record<string, unknown> = {},
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    const id = this.nextId++;
    const reply = this.reply(id, ms);
    this.send({ ...fields, type, id });
    return reply;
  }

  /** Like `request`, but returns the `result` of an `ok` or throws. */
  async call<T = Record<string, unknown>>(
    type: string,
    fields: Record<string, unknown> = {},
    ms = DEFAULT_WAIT_MS,
  ): Promise<T> {
    const reply = await this.request(type, fields, ms);
    if (reply.type !== "ok") {
      throw new Error(`${type} failed: ${JSON.stringify(reply)}`);
    }
    return reply.result as T;
  }

  /** Subscribes to `channel` and expects `ok`; returns the result. */
  subscribe<T = SubscribeResult>(
    channel: string,
    fields: Record<string, unknown> = {},
  ): Promise<T> {
    return this.call<T>("subscribe", { ...fields, channel });
  }

  /** Waits for the reply with `id`, which may already have arrived. */
  reply(id: number, ms = DEFAULT_WAIT_MS): Promise<ServerFrame> {
    return this.waitFor((frame) => frame.id === id, ms, `reply ${id}`);
  }

  /** Sends `frame` as JSON text, as is (no id is added). */
  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends raw text, or a binary frame when `data` is a Buffer. */
  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  /** Frames without an `id`, in arrival order. */
  get pushes(): ServerFrame[] {
    return this.frames.filter((frame) => frame.id === undefined);
  }

  /** `message` pushes received so far, of one channel or of all. */
  messages(channel?: string): ServerFrame[] {
    return this.frames.filter(isMessage(channel));
  }

  /**
   * The first frame, received before or after the call, that passes
   * `match`; rejects after `ms` or when the socket closes first.
   */
  waitFor(
    match: (frame: ServerFrame) => boolean,
    ms = DEFAULT_WAIT_MS,
    what = "a frame",
  ): Promise<ServerFrame> {
    const found = this.frames.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return this.next(match, ms, what);
  }

  /** Waits until `count` frames pass `match`; returns them all. */
  async waitForCount(
    match: (frame: ServerFrame) => boolean,
    count: number,
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame[]> {
    let seen = this.frames.filter(match).length;
    if (seen < count) {
      await this.next(
        (frame) => match(frame) && ++seen >= count,
        ms,
        `${count} frames`,
      );
    }
    return this.frames.filter(match);
  }

  /** Waits for a `message` on `channel` whose data deep-equals `data`. */
  waitForMessage(
    channel: string,
    data: unknown,
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    const wanted = JSON.stringify(data);
    return this.waitFor(
      (frame) =>
        isMessage(channel)(frame) && JSON.stringify(frame.data) === wanted,
      ms,
      `message ${wanted.slice(0, 60)} on ${channel}`,
    );
  }

  /** Waits for the close; rejects if it does not come within `ms`. */
  waitForClose(ms = DEFAULT_WAIT_MS): Promise<Closed> {
    return within(this.closed, ms, "close");
  }

  /** Whether the socket is open. */
  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Closes politely and waits for the close, at most `ms`; then
   * terminates.
   */
  async close(ms = DEFAULT_WAIT_MS): Promise<Closed> {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.close(1000);
      await within(this.closed, ms, "client close").catch(() =>
        this.ws.terminate(),
      );
    }
    return this.closed;
  }

  /** Destroys the TCP socket at once, as a killed process would. */
  terminate(): void {
    this.ws.terminate();
  }

  /** The first frame still to come that passes `match`. */
  private next(
    match: (frame: ServerFrame) => boolean,
    ms: number,
    what: string,
  ): Promise<ServerFrame> {
    const closedFirst = this.closed.then(({ code }) => {
      throw new Error(`closed ${code} before ${what}`);
    });
    return within(
      Promise.race([this.inbox.next(match), closedFirst]),
      ms,
      what,
    );
  }
}

/** Connects and subscribes; returns the client, its id and the result. */
export async function subscribedClient(
  port: number,
  channel: string,
  fields: { token?: string; session?: string; presence?: boolean } = {},
): Promise<{ client: TestClient; id: string; sub: SubscribeResult }> {
  const { presence, ...connect } = fields;
  const client = await TestClient.connect(port, connect);
  const sub = await client.subscribe(channel, { presence });
  return { client, id: client.connectResult!.client, sub };
}

/** Closes every client, ignoring ones already closed. */
export async function closeAll(clients: Iterable<TestClient>): Promise<void> {
  await Promise.all([...clients].map((client) => client.close()));
}

/** WebSocket opcodes (RFC 6455, 5.2). */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/**
 * A masked client frame header declaring `length` payload bytes, with the
 * mask key (zeros unless given). `length` may exceed what is ever sent.
 */
export function frameHeader(
  opcode: number,
  length: number | bigint,
  options: { fin?: boolean; mask?: Buffer } = {},
): Buffer {
  const first = ((options.fin ?? true) ? 0x80 : 0) | opcode;
  const mask = options.mask ?? Buffer.alloc(4);
  const size = BigInt(length);
  let head: Buffer;
  if (size < 126n) {
    head = Buffer.from([first, 0x80 | Number(size)]);
  } else if (size < 65536n) {
    head = Buffer.alloc(4);
    head[0] = first;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(Number(size), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = first;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(size, 2);
  }
  return Buffer.concat([head, mask]);
}

/** A complete masked client frame with a random mask key. */
export function encodeFrame(
  opcode: number,
  payload: Buffer | string,
  options: { fin?: boolean } = {},
): Buffer {
  const body = Buffer.from(payload);
  const mask = randomBytes(4);
  const masked = Buffer.alloc(body.length);
  for (let i = 0; i < body.length; i++) {
    masked[i] = body[i]! ^ mask[i % 4]!;
  }
  return Buffer.concat([
    frameHeader(opcode, body.length, { fin: options.fin, mask }),
    masked,
  ]);
}

/** A frame the server sent to a `RawClient`. */
export interface RawFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

/** The HTTP response to a hand-made upgrade request. */
export interface RawResponse {
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Record<string, string>;
}

/** Options of a hand-made upgrade request. */
export interface UpgradeOptions {
  /** @default "/ws" */
  path?: string;
  /**
   * Request headers on top of the handshake's own; one named like one of
   * those (in any case) replaces it.
   */
  headers?: Record<string, string>;
}

/** The head of the answer to an upgrade, and its socket. */
interface Answered {
  readonly socket: Socket;
  readonly response: RawResponse;
  /** Bytes received after the head. */
  readonly rest: Buffer;
}

/**
 * Writes a WebSocket upgrade request, with `Sec-WebSocket-Protocol:
 * protocol` unless it is `null`, on a TCP socket to 127.0.0.1:`port`, and
 * reads the head of the answer. The socket is left paused.
 */
function sendUpgrade(
  port: number,
  protocol: string | null,
  options: UpgradeOptions,
): Promise<Answered> {
  const socket = netConnect({ host: "127.0.0.1", port });
  const headers = new Map<string, string>();
  const set = (name: string, value: string) => {
    const same = [...headers.keys()].find(
      (key) => key.toLowerCase() === name.toLowerCase(),
    );
    headers.set(same ?? name, value);
  };
  set("Host", `127.0.0.1:${port}`);
  set("Upgrade", "websocket");
  set("Connection", "Upgrade");
  set("Sec-WebSocket-Key", randomBytes(16).toString("base64"));
  set("Sec-WebSocket-Version", "13");
  if (protocol !== null) set("Sec-WebSocket-Protocol", protocol);
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    set(name, value);
  }
  const lines = [`GET ${options.path ?? "/ws"} HTTP/1.1`];
  for (const [name, value] of headers) lines.push(`${name}: ${value}`);
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);

  const answered = new Promise<Answered>((resolve, reject) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return;
      socket.off("data", onData);
      socket.off("error", reject);
      // Held until the reader of what follows is listening.
      socket.pause();
      socket.on("error", () => {
        // Resets after the answer are expected; 'close' reports the end.
      });
      const response = parseResponse(head.subarray(0, end).toString());
      resolve({ socket, response, rest: head.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
  return within(answered, DEFAULT_WAIT_MS, "upgrade answer").catch(
    (error: unknown) => {
      socket.destroy();
      throw error;
    },
  );
}

/** What a hand-made upgrade request got back. */
export interface UpgradeAnswer extends RawResponse {
  /** The body of a refusal; empty for a 101. */
  readonly body: string;
}

/**
 * Sends a hand-made upgrade request (no subprotocol unless in `headers`)
 * and returns the HTTP answer; a 101 socket is destroyed at once.
 */
export async function rawUpgrade(
  port: number,
  options: UpgradeOptions = {},
): Promise<UpgradeAnswer> {
  const { socket, response, rest } = await sendUpgrade(port, null, options);
  if (response.status === 101) {
    socket.destroy();
    return { ...response, body: "" };
  }
  const length = Number(response.headers["content-length"] ?? Infinity);
  let body = rest;
  const complete = new Promise<void>((resolve) => {
    socket.once("close", () => resolve());
    const take = (chunk: Buffer) => {
      body = Buffer.concat([body, chunk]);
      if (body.length >= length) resolve();
    };
    socket.on("data", take);
    socket.resume();
    take(Buffer.alloc(0));
  });
  await within(complete, DEFAULT_WAIT_MS, "upgrade refusal body").finally(() =>
    socket.destroy(),
  );
  return { ...response, body: body.toString() };
}

/** Options of a `RawClient` upgrade. */
export interface RawOptions extends UpgradeOptions {
  /** `Sec-WebSocket-Protocol`; `null` sends none. @default SUBPROTOCOL */
  protocol?: string | null;
  /**
   * Keep server frames in `frames` and text in `texts`. Turn off to read
   * megabytes without holding them: replies are still kept, but a push is
   * only seen by `waitForText` calls already waiting when it arrives (use
   * `messageOffsets` instead). @default true
   */
  keepFrames?: boolean;
}

/**
 * A WebSocket client over a bare TCP socket: it completes the handshake and
 * then writes whatever bytes it is given. It parses what the server sends,
 * answers pings with pongs (nothing else on its own; not even a close
 * frame) and records the close frame.
 */
export class RawClient {
  readonly frames: RawFrame[] = [];
  /** Text frames, parsed as JSON. */
  readonly texts: ServerFrame[] = [];
  /** Frames received, counted even when not kept. */
  frameCount = 0;
  /** Payload bytes received. */
  bytesReceived = 0;
  /** Offsets of the `message` pushes received, kept even when not kept. */
  readonly messageOffsets: number[] = [];
  /** The close frame, once one arrived. */
  closeFrame: Closed | undefined;
  /** Resolves when the TCP socket has closed. */
  readonly ended: Promise<void>;

  private pending: Buffer = Buffer.alloc(0);
  private readonly closeInbox = new Inbox<Closed>();
  private readonly textInbox = new Inbox<ServerFrame>();
  private nextId = 1;

  private constructor(
    readonly socket: Socket,
    readonly response: RawResponse,
    rest: Buffer,
    private readonly keepFrames: boolean,
  ) {
    liveClients.add(this);
    this.ended = new Promise((resolve) =>
      socket.once("close", () => {
        liveClients.delete(this);
        resolve();
      }),
    );
    socket.on("data", (chunk: Buffer) => this.take(chunk));
    if (rest.length > 0) this.take(rest);
    socket.resume();
  }

  /** Connects to 127.0.0.1:`port` and completes the upgrade. */
  static async open(
    port: number,
    options: RawOptions = {},
  ): Promise<RawClient> {
    const protocol =
      options.protocol === undefined ? SUBPROTOCOL : options.protocol;
    const { socket, response, rest } = await sendUpgrade(
      port,
      protocol,
      options,
    );
    if (response.status !== 101) {
      socket.destroy();
      throw new Error(`upgrade refused: ${response.status}`);
    }
    return new RawClient(socket, response, rest, options.keepFrames ?? true);
  }

  /** Writes raw bytes. */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Writes one masked frame. */
  sendFrame(
    opcode: number,
    payload: Buffer | string,
    options: { fin?: boolean } = {},
  ): void {
    this.socket.write(encodeFrame(opcode, payload, options));
  }

  /** Writes `value` as one JSON text frame. */
  sendJson(value: unknown): void {
    this.sendFrame(Opcode.Text, JSON.stringify(value));
  }

  /** Sends a request with a fresh id and waits for its reply. */
  request(
    type: string,
    fields: Record<string, unknown> = {},
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    const id = this.nextId++;
    this.sendJson({ ...fields, type, id });
    return within(
      this.textInbox.find((frame) => frame.id === id),
      ms,
      `raw reply to request ${id}`,
    );
  }

  /** Sends `connect` and expects `ok`. */
  async connect(fields: Record<string, unknown> = {}): Promise<void> {
    const reply = await this.request("connect", fields);
    if (reply.type !== "ok") throw new Error(`connect: ${reply.code}`);
  }

  /** The first text frame, received or to come, that matches. */
  waitForText(
    match: (frame: ServerFrame) => boolean,
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    return within(this.textInbox.find(match), ms, "raw text frame");
  }

  /**
   * Waits for the server's close frame. If the socket ends without one,
   * rejects: a test expecting a code must see that code.
   */
  waitForClose(ms = DEFAULT_WAIT_MS): Promise<Closed> {
    const noFrame = this.ended.then(() => {
      if (this.closeFrame) return this.closeFrame;
      throw new Error("the socket ended without a close frame");
    });
    return within(
      Promise.race([this.closeInbox.find(() => true), noFrame]),
      ms,
      "close frame",
    );
  }

  /** Stops reading from the socket; the kernel buffers fill up. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Destroys the TCP socket at once, as a killed process would. */
  terminate(): void {
    this.socket.destroy();
  }

  private take(chunk: Buffer): void {
    this.pending =
      this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      const frame = readFrame(this.pending);
      if (!frame) return;
      this.pending = this.pending.subarray(frame.size);
      this.received(frame.frame);
    }
  }

  private received(frame: RawFrame): void {
    this.frameCount += 1;
    this.bytesReceived += frame.payload.length;
    if (this.keepFrames) this.frames.push(frame);
    if (frame.opcode === Opcode.Close) {
      const code =
        frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
      this.closeFrame = {
        code,
        reason: frame.payload.subarray(2).toString(),
      };
      this.closeInbox.push(this.closeFrame);
    } else if (frame.opcode === Opcode.Ping) {
      if (!this.closeFrame) this.sendFrame(Opcode.Pong, frame.payload);
    } else if (frame.opcode === Opcode.Text) {
      const text = JSON.parse(frame.payload.toString()) as ServerFrame;
      if (text.type === "message" && typeof text.offset === "number") {
        this.messageOffsets.push(text.offset);
      }
      if (this.keepFrames || text.id !== undefined) {
        this.texts.push(text);
        this.textInbox.push(text);
      } else {
        this.textInbox.offer(text);
      }
    }
  }
}

/** Parses one unmasked server frame at the start of `bytes`. */
function readFrame(
  bytes: Buffer,
): { frame: RawFrame; size: number } | undefined {
  if (bytes.length < 2) return undefined;
  const fin = (bytes[0]! & 0x80) !== 0;
  const opcode = bytes[0]! & 0x0f;
  let length = bytes[1]! & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.length < 4) return undefined;
    length = bytes.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (bytes.length < 10) return undefined;
    length = Number(bytes.readBigUInt64BE(2));
    offset = 10;
  }
  if (bytes.length < offset + length) return undefined;
  const payload = Buffer.from(bytes.subarray(offset, offset + length));
  return { frame: { fin, opcode, payload }, size: offset + length };
}

function parseResponse(head: string): RawResponse {
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon === -1) continue;
    headers[line.slice(0, colon).trim().toLowerCase()] = line
      .slice(colon + 1)
      .trim();
  }
  return { status: Number(statusLine.split(" ")[1]), headers };
}

/** What an HTTP call got back. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: any;
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

/** Claims of a test token; `exp` is in seconds since the epoch. */
export interface TokenClaims extends Omit<JWTPayload, "exp"> {
  sub?: string;
  /** `null` leaves `exp` out. @default an hour from now */
  exp?: number | null;
  sb?: { subscribe?: string[]; publish?: string[] };
}

/** Grants to subscribe and publish on every channel. */
export const ALL_GRANTS = { subscribe: ["*"], publish: ["*"] };

/**
 * Signs `claims` as a JWT with `key`, a secret for HS256 or a private
 * key for `alg`; sets `iat`.
 */
export function mintToken(
  key: string | CryptoKey,
  claims: TokenClaims = {},
  alg = "HS256",
): Promise<string> {
  const { exp, ...rest } = claims;
  const jwt = new SignJWT(rest)
    .setProtectedHeader({ alg, typ: "JWT" })
    .setIssuedAt();
  if (exp !== null) {
    jwt.setExpirationTime(exp ?? Math.floor(Date.now() / 1000) + 3600);
  }
  return jwt.sign(
    typeof key === "string" ? new TextEncoder().encode(key) : key,
  );
}

/** The presence user of an anonymous client: `anon:` + session hash. */
export function anonUser(session: string): string {
  const digest = createHash("sha256").update(session).digest("base64url");
  return `anon:${digest.slice(0, 16)}`;
}

/** One logged line. */
export interface LogLine {
  readonly level: "debug" | "info" | "warn" | "error";
  readonly fields: LogFields;
  readonly message: string;
}

/** A `Logger` that keeps every line, for tests that read the log. */
export class CapturingLogger implements Logger {
  readonly lines: LogLine[] = [];

  debug(fields: LogFields, message: string): void {
    this.lines.push({ level: "debug", fields, message });
  }
  info(fields: LogFields, message: string): void {
    this.lines.push({ level: "info", fields, message });
  }
  warn(fields: LogFields, message: string): void {
    this.lines.push({ level: "warn", fields, message });
  }
  error(fields: LogFields, message: string): void {
    this.lines.push({ level: "error", fields, message });
  }

  /** Lines at `level`. */
  at(level: LogLine["level"]): LogLine[] {
    return this.lines.filter((line) => line.level === level);
  }
}

let gcFunction: (() => void) | undefined;

/**
 * Runs a full garbage collection, twice, so memory measurements compare
 * live data rather than garbage. Works without `--expose-gc`.
 */
export async function collectGarbage(): Promise<void> {
  if (!gcFunction) {
    setFlagsFromString("--expose-gc");
    gcFunction = runInNewContext("gc") as () => void;
  }
  gcFunction();
  await new Promise((resolve) => setImmediate(resolve));
  gcFunction();
}
