// Publishing straight into a redis-engine fleet's Redis (Node only)
export {
  DEFAULT_HISTORY_META_TTL_MS,
  DEFAULT_HISTORY_SIZE,
  DEFAULT_HISTORY_TTL_MS,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  DEFAULT_MAX_MESSAGE_SIZE,
  RedisPublisher,
} from "./redis-publisher.js";
export type {
  RedisClient,
  RedisNamespaceOptions,
  RedisPublisherOptions,
} from "./redis-publisher.js";
export { InvalidArgumentError, NetworkError, TimeoutError } from "./errors.js";
