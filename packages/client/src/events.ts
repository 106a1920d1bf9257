import type { ConnectResult } from "@switchboard/protocol";

import type { SwitchboardClientError } from "./errors.js";

/**
 * Connection lifecycle: `disconnected` (idle, or waiting to reconnect),
 * `connecting` (getting a token, opening a socket, the `connect`
 * handshake), `connected`, and `closed`, which is final.
 */
export type ConnectionState =
  "disconnected" | "connecting" | "connected" | "closed";

/** Payload of the `state` event. */
export interface StateChange {
  readonly from: ConnectionState;
  readonly to: ConnectionState;
}

/** Payload of the `disconnected` event. */
export interface Disconnected {
  /** The close code, or 1006 when the client gave up on the socket. */
  readonly code: number;
  readonly reason: string;
  /** Whether the client will reconnect by itself. */
  readonly reconnect: boolean;
}

/** Events of the client, each with its payload. */
export interface ClientEvents {
  /** Every state change, alongside the specific events below. */
  state: StateChange;
  /** A connection is up: the server's `connect` result. */
  connected: ConnectResult;
  /** A connection went away. */
  disconnected: Disconnected;
  /** Something failed that no promise reports. */
  error: SwitchboardClientError;
}

/** Options of `client.publish`. */
export interface PublishOptions {
  /**
   * Idempotency key, 1-64 of `A-Za-z0-9_-`, scoped to the channel.
   * @default a random key, generated when `publish` is called
   */
  key?: string;
}
