import {
  isValidChannel,
  isValidIdempotencyKey,
  type HistoryResult,
  type Json,
  type Position,
  type PresenceResult,
  type PublishResult,
} from "@switchboard/protocol";

import {
  ApiError,
  InvalidArgumentError,
  NetworkError,
  TimeoutError,
} from "./errors.js";
import { jsonText } from "./json-data.js";

/** How long one HTTP API call may take, in ms (10 s). */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Options of `SwitchboardApi`. */
export interface ApiOptions {
  /**
   * Base URL of a node or of the load balancer in front of a fleet, such
   * as `https://realtime.example.com`; `/api/...` is appended. `ws:` and
   * `wss:` are read as `http:` and `https:`.
   */
  url: string;
  /**
   * The node's `--api-key`, sent as `Authorization: Bearer`. Without it
   * only a node on the same machine answers (loopback).
   */
  apiKey?: string;
  /** Deadline of each call, in ms. @default 10000 */
  timeoutMs?: number;
  /** The `fetch` to use. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** Options of a publish or broadcast. */
export interface ApiPublishOptions {
  /**
   * Idempotency key (1-64 of `A-Za-z0-9_-`): a retry with the same key
   * within the node's idempotency window publishes once.
   */
  key?: string;
}

/** What `broadcast` returns for each channel. */
export interface BroadcastResult extends PublishResult {
  readonly channel: string;
}

/** Options of `history`. */
export interface ApiHistoryOptions {
  /** Most messages returned. @default 0: the position only */
  limit?: number;
  /** Only messages after this position. */
  since?: Position;
  /** The newest `limit`, newest first. @default false */
  reverse?: boolean;
}

/** What a node's HTTP API answers with an error. */
interface ErrorBody {
  readonly error?: { readonly code?: string; readonly message?: string };
}

/**
 * The HTTP API of a Switchboard node or fleet, with `fetch` only, so it
 * runs in Node, route handlers, server actions and edge runtimes.
 */
export class SwitchboardApi {
  private readonly base: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;

  constructor(options: ApiOptions) {
    if (typeof options?.url !== "string") {
      throw new InvalidArgumentError("url must be a string");
    }
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new InvalidArgumentError(`url is not a URL: ${options.url}`);
    }
    url.protocol = url.protocol.replace(/^ws/, "http");
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new InvalidArgumentError(
        `url must be http(s) or ws(s), got ${url.protocol}`,
      );
    }
    if (options.apiKey !== undefined && typeof options.apiKey !== "string") {
      throw new InvalidArgumentError("apiKey must be a string");
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new InvalidArgumentError("timeoutMs must be a number above 0");
    }
    const fetcher = options.fetch ?? globalThis.fetch;
    if (typeof fetcher !== "function") {
      throw new InvalidArgumentError("no fetch: pass the fetch option");
    }
    this.base = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
    this.apiKey = options.apiKey;
    this.timeoutMs = timeoutMs;
    this.fetch = fetcher;
  }

  /** Publishes `data` on `channel`; resolves with its position. */
  async publish(
    channel: string,
    data: Json,
    options: ApiPublishOptions = {},
  ): Promise<PublishResult> {
    checkChannel(channel);
    checkData(data);
    const body = { channel, data, key: checkKey(options.key) };
    return this.call<PublishResult>("POST", "/api/publish", body);
  }

  /** Publishes the same `data` on each of `channels` (1-1000). */
  async broadcast(
    channels: readonly string[],
    data: Json,
    options: ApiPublishOptions = {},
  ): Promise<BroadcastResult[]> {
    if (!Array.isArray(channels) || channels.length === 0) {
      throw new InvalidArgumentError("channels must be a non-empty array");
    }
    channels.forEach(checkChannel);
    checkData(data);
    const body = { channels, data, key: checkKey(options.key) };
    const reply = await this.call<{ results: BroadcastResult[] }>(
      "POST",
      "/api/broadcast",
      body,
    );
    return reply.results;
  }

  /** Reads a channel's position and stored messages. */
  async history(
    channel: string,
    options: ApiHistoryOptions = {},
  ): Promise<HistoryResult> {
    checkChannel(channel);
    const query = new URLSearchParams({ channel });
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.since) {
      query.set("epoch", options.since.epoch);
      query.set("offset", String(options.since.offset));
    }
    if (options.reverse) query.set("reverse", "true");
    return this.call<HistoryResult>("GET", `/api/history?${query}`);
  }

  /** Who is in a channel: one member per connection. */
  async presence(channel: string): Promise<PresenceResult> {
    checkChannel(channel);
    const query = new URLSearchParams({ channel });
    return this.call<PresenceResult>("GET", `/api/presence?${query}`);
  }

  /**
   * Closes every connection of `user` on the node that answers (4000, or
   * 1001 with a reconnect push when `reconnect` is true). Behind a load
   * balancer that is one node of the fleet.
   */
  async disconnect(
    user: string,
    options: { reconnect?: boolean } = {},
  ): Promise<number> {
    checkUser(user);
    const reply = await this.call<{ disconnected: number }>(
      "POST",
      "/api/disconnect",
      { user, reconnect: options.reconnect },
    );
    return reply.disconnected;
  }

  /** Ends `user`'s subscriptions to `channel` on the node that answers. */
  async unsubscribe(user: string, channel: string): Promise<number> {
    checkUser(user);
    checkChannel(channel);
    const reply = await this.call<{ unsubscribed: number }>(
      "POST",
      "/api/unsubscribe",
      { user, channel },
    );
    return reply.unsubscribed;
  }

  private async call<T>(
    method: "GET" | "POST",
    path: string,
    body?: Record<string, unknown>,
  ): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.apiKey !== undefined) {
      headers.authorization = `Bearer ${this.apiKey}`;
    }
    if (body) headers["content-type"] = "application/json";
    const signal = AbortSignal.timeout(this.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(`${this.base}${path}`, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        signal,
        cache: "no-store",
      });
      text = await response.text();
    } catch (error) {
      if (signal.aborted) {
        const route = path.split("?", 1)[0];
        throw new TimeoutError(
          `${method} ${route}: no answer in ${this.timeoutMs} ms`,
        );
      }
      throw new NetworkError(`${method} ${this.base}: unreachable`, {
        cause: error,
      });
    }
    if (!response.ok) throw apiError(response.status, text);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, "internal", "answer is not JSON");
    }
  }
}

function apiError(status: number, text: string): ApiError {
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    // A proxy's HTML error page: the status says enough.
  }
  return new ApiError(
    status,
    body.error?.code ?? `http_${status}`,
    body.error?.message ?? `HTTP ${status}`,
  );
}

/** Throws `InvalidArgumentError` for a channel name nodes would refuse. */
export function checkChannel(channel: unknown): void {
  if (!isValidChannel(channel)) {
    throw new InvalidArgumentError(
      "channel must be 1-200 characters of A-Za-z0-9_-:.@=/, got " +
        JSON.stringify(channel),
    );
  }
}

/** Throws `InvalidArgumentError` for an idempotency key nodes would refuse. */
export function checkKey(key: unknown): string | undefined {
  if (key !== undefined && !isValidIdempotencyKey(key)) {
    throw new InvalidArgumentError("key must be 1-64 of A-Za-z0-9_-");
  }
  return key;
}

function checkData(data: unknown): void {
  jsonText(data);
}

function checkUser(user: unknown): void {
  if (typeof user !== "string" || user === "") {
    throw new InvalidArgumentError("user must be a non-empty string");
  }
}
