export {
  CloseCode,
  ErrorCode,
  MAX_CLOSE_REASON_BYTES,
  SHED_LOAD_MIN_DELAY_MS,
  closeAction,
  isTemporaryError,
} from "./codes.js";
export type { CloseAction } from "./codes.js";
export {
  MAX_CHANNEL_LENGTH,
  isValidChannel,
  isValidIdempotencyKey,
  matchesPattern,
  namespaceOf,
} from "./channel.js";
export { ProtocolError, decodeRequest, isPosition } from "./decode.js";
export { PROTOCOL_VERSION, SUBPROTOCOL } from "./messages.js";
export type {
  ConnectLimits,
  ConnectRequest,
  ConnectResult,
  ErrorReply,
  HistoryRequest,
  HistoryResult,
  JoinPush,
  Json,
  LeavePush,
  MessagePush,
  OkReply,
  PingRequest,
  Position,
  PresenceMember,
  PresenceRequest,
  PresenceResult,
  PublishRequest,
  PublishResult,
  Publisher,
  ReconnectPush,
  RefreshRequest,
  Request,
  RequestType,
  ServerMessage,
  SubscribeRequest,
  SubscribeResult,
  UnsubscribeRequest,
  UnsubscribedPush,
} from "./messages.js";
export {
  CONTROL_TOPIC,
  GENERATION_SCRIPT,
  META_PATTERN,
  NODES_KEY,
  PRESENCE_ADD_SCRIPT,
  PRESENCE_REAP_SCRIPT,
  PRESENCE_REMOVE_SCRIPT,
  PUBLISH_SCRIPT,
  READ_SCRIPT,
  REDIS_SCHEMA,
  SHARD_KEY,
  SHARD_SET_KEY,
  SHARD_SET_SCRIPT,
  channelKeys,
  decodeTopicPayload,
  nodeKeys,
  shardedScript,
  topicChannel,
} from "./redis-schema.js";
export type { ChannelKeys, TopicPayload } from "./redis-schema.js";
export {
  RedisUrlError,
  SINGLE_SHARD,
  crc32,
  fingerprint,
  parseShards,
  placeShard,
} from "./shard-set.js";
export type { ShardAddress } from "./shard-set.js";
export {
  SLOTS,
  clusterGeneration,
  clusterRetryDelay,
  isClusterInfo,
  keySlot,
  redisCredentials,
  redisIds,
  retryUnrun,
} from "./redis-cluster.js";
export { evalScript, scriptSource } from "./redis-script.js";
export type { ScriptSource } from "./redis-script.js";
export type { RedisIds } from "./redis-cluster.js";
