import { SUBPROTOCOL } from "@switchboard/protocol";

import { TransportError } from "./errors.js";

/** The `close` event as both the DOM and `ws` deliver it. */
export interface CloseEventLike {
  readonly code: number;
  readonly reason: string;
}

/** The `message` event as both the DOM and `ws` deliver it. */
export interface MessageEventLike {
  readonly data: unknown;
}

/**
 * An event handler property. Declared through a method so its parameter
 * is checked bivariantly: the DOM's and `ws`'s handlers, which take their
 * own richer event types, are then assignable.
 */
export type EventHandler<E> = {
  bivariant(event: E): void;
}["bivariant"];

/**
 * The part of the WHATWG `WebSocket` the client uses, which browsers,
 * Node 22's global and the `ws` package all provide.
 */
export interface WebSocketLike {
  /** The subprotocol the server selected; empty when none. */
  readonly protocol: string;
  onopen: EventHandler<unknown> | null;
  onmessage: EventHandler<MessageEventLike> | null;
  onclose: EventHandler<CloseEventLike> | null;
  onerror: EventHandler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: the global one, `ws`'s, or any compatible one. */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
) => WebSocketLike;

let nodeWebSocket: Promise<WebSocketConstructor> | undefined;

/**
 * Opens a socket to `url` offering the `switchboard.v1` subprotocol, with
 * `implementation`, else the global `WebSocket`, else the `ws` package.
 * `ws` is imported lazily, so browser bundles never load it.
 */
export async function openSocket(
  url: string,
  implementation?: WebSocketConstructor,
): Promise<WebSocketLike> {
  const WebSocketClass = implementation ?? (await defaultImplementation());
  try {
    return new WebSocketClass(url, SUBPROTOCOL);
  } catch (error) {
    throw new TransportError(`cannot open a WebSocket to ${url}`, {
      cause: error,
    });
  }
}

async function defaultImplementation(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof global === "function") return global as WebSocketConstructor;

  nodeWebSocket ??= import("ws").then(
    (module) => module.WebSocket as unknown as WebSocketConstructor,
  );
  try {
    return await nodeWebSocket;
  } catch (error) {
    nodeWebSocket = undefined;
    throw new TransportError(
      "no global WebSocket and the ws package cannot be loaded",
      { cause: error },
    );
  }
}
