import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

import { SUBPROTOCOL } from "@switchboard/protocol";

/** Why an upgrade is refused before the handshake. */
export interface UpgradeRefusal {
  readonly status: number;
  readonly reason: string;
  readonly message: string;
  readonly retryAfter?: number;
}

/** Answers an upgrade with an HTTP error and closes the socket. */
export function refuseUpgrade(socket: Duplex, refusal: UpgradeRefusal): void {
  const body = JSON.stringify({
    error: { code: refusal.reason, message: refusal.message },
  });
  const headers = [
    `HTTP/1.1 ${refusal.status} ${statusText(refusal.status)}`,
    "Connection: close",
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  if (refusal.retryAfter !== undefined) {
    headers.push(`Retry-After: ${refusal.retryAfter}`);
  }
  if (refusal.status === 400 && refusal.reason === "subprotocol") {
    headers.push(`Sec-WebSocket-Protocol: ${SUBPROTOCOL}`);
  }
  socket.end(`${headers.join("\r\n")}\r\n\r\n${body}`);
}

function statusText(status: number): string {
  switch (status) {
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    default:
      return "Service Unavailable";
  }
}

/**
 * A refusal when the upgrade offers subprotocols but not ours; none
 * offered is taken as version 1.
 */
export function checkSubprotocol(
  request: IncomingMessage,
): UpgradeRefusal | undefined {
  const header = request.headers["sec-websocket-protocol"];
  if (header === undefined) return undefined;
  const offered = header.split(",").map((p) => p.trim());
  if (offered.includes(SUBPROTOCOL)) return undefined;
  return {
    status: 400,
    reason: "subprotocol",
    message: `unsupported subprotocol; supported: ${SUBPROTOCOL}`,
  };
}

/**
 * The client's address: the peer, or the nearest untrusted address of
 * `X-Forwarded-For` when the peer is a trusted proxy.
 */
export function clientAddress(
  request: IncomingMessage,
  trustProxy: readonly string[],
): string {
  const peer = normalize(request.socket.remoteAddress ?? "");
  if (!trustProxy.includes(peer)) return peer;
  const header = request.headers["x-forwarded-for"];
  const chain = (Array.isArray(header) ? header.join(",") : (header ?? ""))
    .split(",")
    .map((a) => normalize(a.trim()))
    .filter(Boolean);
  for (let i = chain.length - 1; i >= 0; i--) {
    if (!trustProxy.includes(chain[i]!)) return chain[i]!;
  }
  return peer;
}

function normalize(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** Whether an address or host name stays on this machine. */
export function isLoopback(address: string): boolean {
  const plain = normalize(address);
  return (
    plain === "localhost" ||
    plain === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(plain)
  );
}
