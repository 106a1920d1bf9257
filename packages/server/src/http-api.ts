import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

import {
  ErrorCode,
  isValidChannel,
  isValidIdempotencyKey,
  type Json,
  type Position,
} from "@switchboard/protocol";

import type { SwitchboardNode } from "./node.js";
import { RequestError } from "./request-error.js";
import { clientAddress, isLoopback } from "./upgrade.js";
import { historyJson } from "./wire.js";

/** Most channels one broadcast may name. */
const MAX_BROADCAST_CHANNELS = 1000;

type Query = URLSearchParams;
type Handler = (
  node: SwitchboardNode,
  body: Record<string, unknown>,
  query: Query,
  request: IncomingMessage,
) => Promise<string>;

const STATUS: Partial<Record<ErrorCode, number>> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

const ROUTES: Record<string, Handler | undefined> = {
  "POST /api/publish": publish,
  "POST /api/broadcast": broadcast,
  "GET /api/history": history,
  "GET /api/presence": presence,
  "GET /api/channels": channels,
  "POST /api/disconnect": disconnect,
  "POST /api/unsubscribe": unsubscribe,
};

/** What a plain request on the WebSocket path gets, with status 426. */
const UPGRADE_REQUIRED = JSON.stringify({
  error: {
    code: "upgrade_required",
    message:
      "this path takes WebSocket upgrades only; a proxy in front must " +
      "forward the Upgrade and Connection headers",
  },
});

/**
 * Serves `/api/*`, `/healthz`, `/readyz` and `/metrics`, and answers 426
 * to a request on the WebSocket path that is not an upgrade; returns false
 * for every other path so the caller may serve it.
 */
export function handleApiRequest(
  node: SwitchboardNode,
  request: IncomingMessage,
  response: ServerResponse,
): boolean {
  let url: URL;
  try {
    url = new URL(request.url ?? "/", "http://localhost");
  } catch {
    sendError(response, new RequestError(ErrorCode.BadRequest, "bad URL"));
    return true;
  }
  const path = url.pathname;
  if (path === "/healthz") {
    sendJson(response, 200, '{"status":"ok"}');
    return true;
  }
  if (path === "/readyz" || path === "/metrics") {
    if (!authorized(node, request, true)) {
      sendError(response, new RequestError(ErrorCode.Unauthorized, "no key"));
      return true;
    }
    void (path === "/readyz" ? readiness : metrics)(node, response);
    return true;
  }
  if (path === node.options.path) {
    // Most often a proxy that does not forward the upgrade headers.
    response.writeHead(426, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(UPGRADE_REQUIRED),
      Upgrade: "websocket",
    });
    response.end(UPGRADE_REQUIRED);
    return true;
  }
  if (!path.startsWith("/api/")) return false;

  const handler = ROUTES[`${request.method} ${path}`];
  if (!authorized(node, request, false)) {
    sendError(
      response,
      new RequestError(ErrorCode.Unauthorized, "missing or wrong API key"),
    );
  } else if (!handler) {
    sendError(response, new RequestError(ErrorCode.NotFound, "no such route"));
  } else {
    void serve(node, handler, request, response, url.searchParams);
  }
  return true;
}

async function serve(
  node: SwitchboardNode,
  handler: Handler,
  request: IncomingMessage,
  response: ServerResponse,
  query: Query,
): Promise<void> {
  try {
    const body =
      request.method === "POST"
        ? await readBody(request, node.options.frameLimit)
        : {};
    sendJson(response, 200, await handler(node, body, query, request));
  } catch (error) {
    if (error instanceof RequestError) {
      sendError(response, error);
      return;
    }
    node.logger.error({ err: String(error) }, "HTTP API request failed");
    sendError(response, new RequestError(ErrorCode.Unavailable, "failed"));
  }
}

/**
 * With a key configured, the bearer must match it (compared in constant
 * time); without one, only loopback clients are served. Operator
 * endpoints also answer loopback when a key is set.
 */
function authorized(
  node: SwitchboardNode,
  request: IncomingMessage,
  loopbackAllowed: boolean,
): boolean {
  const { apiKey, trustProxy } = node.options;
  // Behind a trusted proxy the peer is loopback for every client: judge
  // the forwarded address instead. A browser on this machine is not
  // trusted as local: it sends an Origin, and a page that rebinds its DNS
  // name to 127.0.0.1 still sends its own name as Host.
  const local =
    isLoopback(clientAddress(request, trustProxy)) &&
    request.headers.origin === undefined &&
    isLoopback(hostName(request.headers.host ?? ""));
  if (apiKey === undefined) return local;
  if (loopbackAllowed && local) return true;
  const header = request.headers.authorization ?? "";
  const match = /^Bearer (.+)$/.exec(header);
  return match !== null && sameSecret(match[1]!, apiKey);
}

/** The name of a Host header: `[::1]:80` -> `::1`, `a:80` -> `a`. */
function hostName(host: string): string {
  if (host.startsWith("[")) return host.slice(1, host.indexOf("]"));
  const colon = host.lastIndexOf(":");
  return colon === -1 ? host : host.slice(0, colon);
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

function readBody(
  request: IncomingMessage,
  limit: number,
): Promise<Record<string, unknown>> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > limit) {
    request.resume();
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        request.removeAllListeners("data");
        request.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    request.on("error", reject);
    request.on("end", () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString());
      } catch {
        reject(badRequest("body is not valid JSON"));
        return;
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        reject(badRequest("body must be a JSON object"));
        return;
      }
      resolve(body as Record<string, unknown>);
    });
  });
}

async function publish(
  node: SwitchboardNode,
  body: Record<string, unknown>,
  _query: Query,
  request: IncomingMessage,
): Promise<string> {
  const channel = body.channel;
  if (!isValidChannel(channel)) throw badChannel();
  const key = idempotencyKey(body, request);
  return JSON.stringify(await publishOne(node, channel, body.data, key));
}

async function broadcast(
  node: SwitchboardNode,
  body: Record<string, unknown>,
  _query: Query,
  request: IncomingMessage,
): Promise<string> {
  const { channels } = body;
  if (
    !Array.isArray(channels) ||
    channels.length === 0 ||
    channels.length > MAX_BROADCAST_CHANNELS ||
    !channels.every(isValidChannel)
  ) {
    throw badRequest(
      `channels must be 1-${MAX_BROADCAST_CHANNELS} valid channel names`,
    );
  }
  const key = idempotencyKey(body, request);
  const results = await Promise.all(
    channels.map(async (channel) => ({
      channel,
      ...(await publishOne(node, channel, body.data, key)),
    })),
  );
  return JSON.stringify({ results });
}

async function publishOne(
  node: SwitchboardNode,
  channel: string,
  data: unknown,
  key: string | undefined,
) {
  if (data === undefined) throw badRequest("data is required");
  const outcome = await node.publish(channel, data as Json, { key });
  return {
    epoch: outcome.epoch,
    offset: outcome.offset,
    duplicate: outcome.duplicate || undefined,
  };
}

async function history(
  node: SwitchboardNode,
  _body: Record<string, unknown>,
  query: Query,
): Promise<string> {
  const channel = query.get("channel");
  if (!isValidChannel(channel)) throw badChannel();
  const limit = integer(query, "limit") ?? 0;
  if (limit > node.options.historyMaxLimit) {
    throw badRequest(`limit must be at most ${node.options.historyMaxLimit}`);
  }
  const epoch = query.get("epoch");
  const offset = integer(query, "offset");
  if ((epoch === null) !== (offset === undefined)) {
    throw badRequest("epoch and offset go together");
  }
  const since: Position | undefined =
    epoch !== null && offset !== undefined ? { epoch, offset } : undefined;
  const reverse = ["true", "1"].includes(query.get("reverse") ?? "");
  const read = await node.engine.read(channel, { since, limit, reverse });
  return historyJson(read, node.options.outboundBufferLimit / 2);
}

async function presence(
  node: SwitchboardNode,
  _body: Record<string, unknown>,
  query: Query,
): Promise<string> {
  const channel = query.get("channel");
  if (!isValidChannel(channel)) throw badChannel();
  const list = await node.engine.presence(
    channel,
    node.options.presenceMaxMembers,
  );
  return JSON.stringify({
    members: list.members,
    truncated: list.truncated || undefined,
  });
}

async function channels(node: SwitchboardNode): Promise<string> {
  const names = (await node.engine.channels()).sort();
  return JSON.stringify({
    channels: names.map((channel) => ({
      channel,
      subscribers: node.hub.count(channel),
    })),
  });
}

async function disconnect(
  node: SwitchboardNode,
  body: Record<string, unknown>,
): Promise<string> {
  const { reconnect } = body;
  const user = requireUser(body);
  if (reconnect !== undefined && typeof reconnect !== "boolean") {
    throw badRequest("reconnect must be a boolean");
  }
  const disconnected = node.disconnectUser(user, reconnect === true);
  await node.engine.control({
    type: "disconnect",
    user,
    reconnect: reconnect === true,
  });
  return JSON.stringify({ disconnected });
}

async function unsubscribe(
  node: SwitchboardNode,
  body: Record<string, unknown>,
): Promise<string> {
  const { channel } = body;
  const user = requireUser(body);
  if (!isValidChannel(channel)) throw badChannel();
  const unsubscribed = node.unsubscribeUser(user, channel);
  await node.engine.control({ type: "unsubscribe", user, channel });
  return JSON.stringify({ unsubscribed });
}

async function readiness(
  node: SwitchboardNode,
  response: ServerResponse,
): Promise<void> {
  const { group } = node.options;
  const { ready, reason, shard, since } = group
    ? await group.readiness()
    : node.readiness();
  if (ready) {
    sendJson(response, 200, '{"status":"ready"}');
  } else {
    sendJson(
      response,
      503,
      JSON.stringify({ status: "not_ready", shard, reason, since }),
    );
  }
}

async function metrics(
  node: SwitchboardNode,
  response: ServerResponse,
): Promise<void> {
  const { group } = node.options;
  const { registry } = node.metrics;
  const { contentType, body } = group
    ? await group.metrics()
    : { contentType: registry.contentType, body: await registry.metrics() };
  response.writeHead(200, { "Content-Type": contentType });
  response.end(body);
}

function idempotencyKey(
  body: Record<string, unknown>,
  request: IncomingMessage,
): string | undefined {
  const key = body.key ?? request.headers["idempotency-key"];
  if (key === undefined) return undefined;
  if (!isValidIdempotencyKey(key)) {
    throw badRequest("key must be 1-64 of A-Za-z0-9_-");
  }
  return key;
}

function requireUser(body: Record<string, unknown>): string {
  const { user } = body;
  if (typeof user !== "string" || user === "") {
    throw badRequest("user must be a non-empty string");
  }
  return user;
}

function integer(query: Query, name: string): number | undefined {
  const text = query.get(name);
  if (text === null) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) {
    throw badRequest(`${name} must be a non-negative integer`);
  }
  return value;
}

function badRequest(message: string): RequestError {
  return new RequestError(ErrorCode.BadRequest, message);
}

function badChannel(): RequestError {
  return badRequest("channel must be 1-200 characters of A-Za-z0-9_-:.@=/");
}

function tooLarge(limit: number): RequestError {
  return new RequestError(ErrorCode.TooLarge, `over ${limit} bytes`);
}

function sendJson(response: ServerResponse, status: number, body: string) {
  response.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  response.end(body);
}

function sendError(response: ServerResponse, error: RequestError): void {
  const status = STATUS[error.code] ?? 500;
  sendJson(
    response,
    status,
    JSON.stringify({ error: { code: error.code, message: error.message } }),
  );
}
