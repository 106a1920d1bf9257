import type { ErrorCode } from "./codes.js";

/** Protocol version spoken by this package. */
export const PROTOCOL_VERSION = 1;

/** The WebSocket subprotocol of version 1. */
export const SUBPROTOCOL = "switchboard.v1";

/** Any JSON value, as carried in `data` and `info`. */
export type Json =
  | null
  | boolean
  | number
  | string
  | readonly Json[]
  | { readonly [key: string]: Json };

/**
 * A stream position. Offsets compare only within one epoch; a new epoch means
 * the stored history can no longer be vouched for.
 */
export interface Position {
  readonly epoch: string;
  readonly offset: number;
}

/** Who published a message, set by the server, never taken from a frame. */
export interface Publisher {
  readonly user?: string;
  readonly client: string;
}

// Client to server. Every request carries an `id` unique among the
// connection's outstanding requests.

/** Client to server: the first frame; authenticates the connection. */
export interface ConnectRequest {
  readonly type: "connect";
  readonly id: number;
  readonly token?: string;
  readonly session?: string;
  readonly client?: { readonly name: string; readonly version: string };
}

/** Client to server: join a channel, optionally recovering from `since`. */
export interface SubscribeRequest {
  readonly type: "subscribe";
  readonly id: number;
  readonly channel: string;
  readonly since?: Position;
  readonly presence?: boolean;
}

/** Client to server: leave a channel (`ok` also when not subscribed). */
export interface UnsubscribeRequest {
  readonly type: "unsubscribe";
  readonly id: number;
  readonly channel: string;
}

/** Client to server: publish `data`; `key` makes retries idempotent. */
export interface PublishRequest {
  readonly type: "publish";
  readonly id: number;
  readonly channel: string;
  readonly data: Json;
  readonly key?: string;
}

/** Client to server: list who is in a channel, across all nodes. */
export interface PresenceRequest {
  readonly type: "presence";
  readonly id: number;
  readonly channel: string;
}

/** Client to server: read stored messages. */
export interface HistoryRequest {
  readonly type: "history";
  readonly id: number;
  readonly channel: string;
  readonly since?: Position;
  readonly limit?: number;
  readonly reverse?: boolean;
}

/** Client to server: application-level heartbeat, answered at once. */
export interface PingRequest {
  readonly type: "ping";
  readonly id: number;
}

/** Client to server: replace the connection's token before it expires. */
export interface RefreshRequest {
  readonly type: "refresh";
  readonly id: number;
  readonly token: string;
}

/** Every message a client may send. */
export type Request =
  | ConnectRequest
  | SubscribeRequest
  | UnsubscribeRequest
  | PublishRequest
  | PresenceRequest
  | HistoryRequest
  | PingRequest
  | RefreshRequest;

/** The `type` of a client request. */
export type RequestType = Request["type"];

// Server to client.

/** Server to client: the request with this `id` succeeded. */
export interface OkReply<R = unknown> {
  readonly type: "ok";
  readonly id: number;
  readonly result?: R;
}

/** Server to client: a request failed, or (without `id`) the connection. */
export interface ErrorReply {
  readonly type: "error";
  readonly id?: number;
  readonly code: ErrorCode;
  readonly message: string;
  readonly temporary: boolean;
  readonly retryAfter?: number;
}

/** Server to client: a publication on a subscribed channel. */
export interface MessagePush {
  readonly type: "message";
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  readonly data: Json;
  readonly publisher?: Publisher;
}

/** Server to client: a user's first connection arrived in a channel. */
export interface JoinPush {
  readonly type: "join";
  readonly channel: string;
  readonly user: string;
  readonly client: string;
}

/** Server to client: a user's last connection left a channel. */
export interface LeavePush {
  readonly type: "leave";
  readonly channel: string;
  readonly user: string;
  readonly client: string;
}

/** Server to client: the server ended one subscription. */
export interface UnsubscribedPush {
  readonly type: "unsubscribed";
  readonly channel: string;
  readonly code: string;
  readonly reason: string;
  readonly resubscribe: boolean;
}

/** Server to client: the node is draining; reconnect after `after` ms. */
export interface ReconnectPush {
  readonly type: "reconnect";
  readonly after: number;
  readonly reason: string;
}

/** Every message a server may send. */
export type ServerMessage =
  | OkReply
  | ErrorReply
  | MessagePush
  | JoinPush
  | LeavePush
  | UnsubscribedPush
  | ReconnectPush;

// Results carried by `ok` replies.

/** Limits the server announces in the `connect` result. */
export interface ConnectLimits {
  readonly maxMessageSize: number;
  readonly maxSubscriptions: number;
  readonly idempotencyWindow: number;
  readonly recoveryMaxPublications: number;
  readonly historyMaxLimit: number;
}

/** Result of `connect`. Durations are in milliseconds. */
export interface ConnectResult {
  readonly client: string;
  readonly node: string;
  readonly session: string;
  readonly protocol: number;
  readonly server: string;
  readonly heartbeat: number;
  readonly pongTimeout: number;
  readonly expiresIn?: number;
  readonly limits: ConnectLimits;
}

/** A presence entry. */
export interface PresenceMember {
  readonly user: string;
  readonly client: string;
  readonly info?: Json;
}

/** Result of `subscribe`. */
export interface SubscribeResult extends Position {
  readonly recovered?: boolean;
  readonly publications?: readonly MessagePush[];
  readonly presence?: PresenceResult;
}

/** Result of `publish`. */
export interface PublishResult extends Position {
  readonly duplicate?: boolean;
}

/** Result of `presence`. */
export interface PresenceResult {
  readonly members: readonly PresenceMember[];
  readonly truncated?: boolean;
}

/** Result of `history`: `offset` is the current top of the stream. */
export interface HistoryResult extends Position {
  readonly publications: readonly MessagePush[];
}
