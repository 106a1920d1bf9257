// Client
export { SDK_NAME, SDK_VERSION, SwitchboardClient } from "./client.js";
export type {
  ClientEvents,
  ConnectionState,
  Disconnected,
  PublishOptions,
  StateChange,
} from "./events.js";

// Options
export {
  CLOSE_WAIT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MAX_DELAY_MS,
  DEFAULT_MIN_DELAY_MS,
  DEFAULT_RECONNECT_SPREAD_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  STABLE_CONNECTION_MS,
  TOKEN_REFRESH_RATIO,
} from "./options.js";
export type { ClientOptions } from "./options.js";
export type { TokenFunction } from "./token.js";
export type { DebugLogger, LogFields } from "./log.js";
export type {
  CloseEventLike,
  EventHandler,
  MessageEventLike,
  WebSocketConstructor,
  WebSocketLike,
} from "./transport.js";

// Subscriptions
export { Subscription } from "./subscription.js";
export type {
  HistoryOptions,
  Message,
  PresenceChange,
  SubscribeOptions,
  Subscribed,
  SubscriptionEvents,
  SubscriptionState,
  Unsubscribed,
} from "./subscription.js";
export type {
  Discontinuity,
  DiscontinuityReason,
  Recovery,
} from "./channel-stream.js";

// Events
export type { Emitter, Listener } from "./emitter.js";

// Errors
export {
  ClosedError,
  DisconnectedError,
  ForbiddenError,
  InvalidArgumentError,
  ServerError,
  SwitchboardClientError,
  TimeoutError,
  TokenError,
  TransportError,
  UnauthorizedError,
  UnsubscribedError,
} from "./errors.js";
export type { ClientErrorCode } from "./errors.js";

// Protocol types apps meet in results and events
export type {
  ConnectLimits,
  ConnectResult,
  HistoryResult,
  Json,
  Position,
  PresenceMember,
  PresenceResult,
  PublishResult,
  Publisher,
} from "@switchboard/protocol";
