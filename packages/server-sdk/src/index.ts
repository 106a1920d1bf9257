// HTTP API
export { DEFAULT_TIMEOUT_MS, SwitchboardApi } from "./api-client.js";
export type {
  ApiHistoryOptions,
  ApiOptions,
  ApiPublishOptions,
  BroadcastResult,
} from "./api-client.js";

// Tokens
export { DEFAULT_TOKEN_TTL_MS, mintToken } from "./token.js";
export type { Grants, MintTokenOptions, TokenAlgorithm } from "./token.js";

// Errors
export {
  ApiError,
  InvalidArgumentError,
  KeyError,
  NetworkError,
  ServerSdkError,
  TimeoutError,
} from "./errors.js";
export type { ServerSdkErrorCode } from "./errors.js";

// Protocol types in results
export type {
  HistoryResult,
  Json,
  Position,
  PresenceMember,
  PresenceResult,
  PublishResult,
} from "@switchboard/protocol";
