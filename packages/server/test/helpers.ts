/**
 * Shared helpers for the server's tests: a real node on a loopback port, a
 * real `ws` client that speaks the protocol, and a raw TCP client for
 * frames `ws` refuses to send (bad UTF-8, reserved opcodes, huge headers).
 *
 * API (kept stable, other test files import it):
 * - `startNode(options)` -> `{ node, port, url, stop() }`, with
 *   `FAST_TIMERS` (heartbeat, pongTimeout, connectTimeout) scaled down
 * - `TestClient.open(url)` / `TestClient.connect(url, fields)`: `request`,
 *   `reply`, `subscribe`, `send`, `sendRaw`, `pushes`, `waitForPush`,
 *   `waitForMessage`, `messages`, `closed`, `waitForClose`, `closeInfo`,
 *   `close`, `terminate`; `closeAll(clients)`
 * - `RawClient.open(port)`: `write`, `sendFrame`, `sendJson`, `request`,
 *   `connect`, `frames`, `texts`, `messageOffsets`, `waitForText`,
 *   `waitForClose`, `closeFrame`, `ended`, `response`, `pause`, `resume`
 * - `encodeFrame`, `frameHeader`, `Opcode`: client frames, byte by byte
 * - `mintToken(secret, claims)`: an HS256 token signed with `jose`
 * - `within(promise, ms, what)`, `waitUntil(check, ms, what)`: bounded waits
 * - `CapturingLogger`: a `Logger` that keeps every line for assertions
 * - `collectGarbage()`: a full GC, for memory measurements
 */
import { randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { SignJWT, type JWTPayload } from "jose";
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

/** Timers scaled down so tests stay fast; spread into `startNode`. */
export const FAST_TIMERS = {
  heartbeat: 1_000,
  pongTimeout: 1_000,
  connectTimeout: 2_000,
} as const satisfies NodeOptions;

/** How long helpers wait for a reply, push or close by default, ms. */
export const DEFAULT_WAIT_MS = 3_000;

/** A node listening on 127.0.0.1 at an ephemeral port. */
export interface StartedNode {
  readonly node: SwitchboardNode;
  readonly port: number;
  /** `ws://127.0.0.1:PORT/ws` */
  readonly url: string;
  /** Closes the node; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a node on an ephemeral loopback port with `options`. */
export async function startNode(
  options: NodeOptions = {},
): Promise<StartedNode> {
  const node = createNode({ ...FAST_TIMERS, port: 0, ...options });
  const { port } = await node.listen();
  return {
    node,
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    stop: () => node.close(),
  };
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
  check: () => boolean,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
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
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      if (waiter.match(item)) waiter.resolve(item);
      else this.waiters.push(waiter);
    }
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
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }
}

/** Options of a `TestClient` socket. */
export interface ClientOptions {
  /** Offered subprotocols; `[]` offers none. @default ["switchboard.v1"] */
  protocols?: string[];
  /** Offer permessage-deflate. @default false */
  perMessageDeflate?: boolean;
  headers?: Record<string, string>;
}

/**
 * A real `ws` client. Replies are matched by `id`; every frame without an
 * `id` is kept in `pushes`; `closed` resolves with the close code.
 */
export class TestClient {
  readonly pushes: ServerFrame[] = [];
  /** Set once the socket has closed. */
  closeInfo: Closed | undefined;
  /** Resolves when the socket closes (code 1006 when no frame came). */
  readonly closed: Promise<Closed>;
  /** The `connect` result, once `connect` succeeded. */
  connectResult: Record<string, unknown> | undefined;

  private nextId = 1;
  private readonly replies = new Inbox<ServerFrame>();
  private readonly pushInbox = new Inbox<ServerFrame>();

  private constructor(readonly ws: WebSocket) {
    ws.on("error", () => {
      // A socket error ends in 'close', which `closed` reports.
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) throw new Error("the server sent a binary frame");
      const frame = JSON.parse(String(data)) as ServerFrame;
      if (typeof frame.id === "number") {
        this.replies.push(frame);
      } else {
        this.pushes.push(frame);
        this.pushInbox.push(frame);
      }
    });
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: String(reason) };
        resolve(this.closeInfo);
      });
    });
  }

  /** Opens a socket to `url`; no protocol frame is sent yet. */
  static open(url: string, options: ClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options.protocols ?? [SUBPROTOCOL], {
      perMessageDeflate: options.perMessageDeflate ?? false,
      headers: options.headers,
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
    url: string,
    fields: Record<string, unknown> = {},
    options: ClientOptions = {},
  ): Promise<TestClient> {
    const client = await TestClient.open(url, options);
    const reply = await Promise.race([
      client.request("connect", fields),
      client.closed.then((closed) => {
        throw new Error(`closed ${closed.code} ${closed.reason} at connect`);
      }),
    ]);
    if (reply.type !== "ok") {
      throw new Error(`connect failed: ${reply.code} ${reply.message}`);
    }
    client.connectResult = reply.result;
    return client;
  }

  /** The id the next `request` will use. */
  get peekId(): number {
    return this.nextId;
  }

  /** Sends a request with a fresh id and waits for its reply. */
  request(
    type: string,
    fields: Record<string, unknown> = {},
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    const id = this.nextId++;
    this.send({ ...fields, type, id });
    return this.reply(id, ms);
  }

  /** Waits for the reply with `id`, which may already have arrived. */
  reply(id: number, ms = DEFAULT_WAIT_MS): Promise<ServerFrame> {
    return within(
      this.replies.find((frame) => frame.id === id),
      ms,
      `reply to request ${id}`,
    );
  }

  /** Subscribes and expects `ok`; returns the result. */
  async subscribe(
    channel: string,
    fields: Record<string, unknown> = {},
  ): Promise<Record<string, unknown>> {
    const reply = await this.request("subscribe", { ...fields, channel });
    if (reply.type !== "ok") {
      throw new Error(`subscribe ${channel}: ${reply.code} ${reply.message}`);
    }
    return reply.result ?? {};
  }

  /** Sends `frame` as JSON text, as is (no id is added). */
  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends raw text, or a binary frame when `data` is a Buffer. */
  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  /** The first push, received or still to come, that matches. */
  waitForPush(
    match: (frame: ServerFrame) => boolean,
    ms = DEFAULT_WAIT_MS,
    what = "a push",
  ): Promise<ServerFrame> {
    return within(this.pushInbox.find(match), ms, what);
  }

  /** Waits for a `message` on `channel` whose data deep-equals `data`. */
  waitForMessage(
    channel: string,
    data: unknown,
    ms = DEFAULT_WAIT_MS,
  ): Promise<ServerFrame> {
    const wanted = JSON.stringify(data);
    return this.waitForPush(
      (frame) =>
        frame.type === "message" &&
        frame.channel === channel &&
        JSON.stringify(frame.data) === wanted,
      ms,
      `message ${wanted.slice(0, 60)} on ${channel}`,
    );
  }

  /** `message` pushes received so far, of one channel or of all. */
  messages(channel?: string): ServerFrame[] {
    return this.pushes.filter(
      (frame) =>
        frame.type === "message" &&
        (channel === undefined || frame.channel === channel),
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

  /** Closes politely and waits for the close, at most `ms`. */
  async close(ms = DEFAULT_WAIT_MS): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    await within(this.closed, ms, "client close").catch(() =>
      this.ws.terminate(),
    );
  }

  /** Destroys the TCP socket at once, as a killed process would. */
  terminate(): void {
    this.ws.terminate();
  }
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

/** The HTTP response to a `RawClient`'s upgrade. */
export interface RawResponse {
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Record<string, string>;
}

/** Options of a `RawClient` upgrade. */
export interface RawOptions {
  path?: string;
  /** `Sec-WebSocket-Protocol`; `null` sends none. @default SUBPROTOCOL */
  protocol?: string | null;
  /** More request headers, e.g. `Sec-WebSocket-Extensions`. */
  headers?: Record<string, string>;
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
    this.ended = new Promise((resolve) => socket.once("close", resolve));
    socket.on("error", () => {
      // Resets after a close are expected; `ended` reports the end.
    });
    socket.on("data", (chunk: Buffer) => this.take(chunk));
    if (rest.length > 0) this.take(rest);
  }

  /** Connects to 127.0.0.1:`port` and completes the upgrade. */
  static open(port: number, options: RawOptions = {}): Promise<RawClient> {
    const socket = netConnect({ host: "127.0.0.1", port });
    const key = randomBytes(16).toString("base64");
    const protocol =
      options.protocol === undefined ? SUBPROTOCOL : options.protocol;
    const lines = [
      `GET ${options.path ?? "/ws"} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
    ];
    if (protocol !== null) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      lines.push(`${name}: ${value}`);
    }
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);

    const handshake = new Promise<RawClient>((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end === -1) return;
        socket.off("data", onData);
        socket.off("error", reject);
        const response = parseResponse(head.subarray(0, end).toString());
        if (response.status !== 101) {
          socket.destroy();
          reject(new Error(`upgrade refused: ${response.status}`));
          return;
        }
        const rest = head.subarray(end + 4);
        resolve(
          new RawClient(socket, response, rest, options.keepFrames ?? true),
        );
      };
      socket.on("data", onData);
      socket.once("error", reject);
    });
    return within(handshake, DEFAULT_WAIT_MS, "raw upgrade");
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

  /** Destroys the socket at once (like a killed process). */
  destroy(): void {
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

/** Claims of a test token; `exp` is in seconds since the epoch. */
export interface TokenClaims extends JWTPayload {
  sub?: string;
  exp?: number;
  sb?: { subscribe?: string[]; publish?: string[] };
}

/** Signs `claims` as an HS256 JWT with `secret`; `exp` defaults to +1 h. */
export function mintToken(
  secret: string,
  claims: TokenClaims,
): Promise<string> {
  const { exp, ...rest } = claims;
  return new SignJWT(rest)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(exp ?? Math.floor(Date.now() / 1000) + 3600)
    .sign(new TextEncoder().encode(secret));
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
