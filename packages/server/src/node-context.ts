import type { TokenVerifier } from "./auth.js";
import type {
  ChannelHub,
  LocalSubscription,
  Subscriber,
} from "./channel-hub.js";
import type { Connection } from "./connection.js";
import type { Engine } from "./engine.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import type { ResolvedOptions } from "./options.js";
import type { Flusher } from "./outbox.js";

/** What a connection needs from the node that holds it. */
export interface NodeContext {
  readonly options: ResolvedOptions;
  readonly engine: Engine;
  readonly hub: ChannelHub;
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Writes every connection's queued frames once per event-loop turn. */
  readonly flusher: Flusher;
  /** The server's version, for the `connect` result. */
  readonly version: string;
  /** Adds a local subscription; it holds messages until it goes live. */
  watch(
    channel: string,
    subscriber: Subscriber,
    subscription: LocalSubscription,
  ): void;
  /** Resolves once the engine delivers the channel to this node. */
  interest(channel: string): Promise<void>;
  /** Removes a local subscription. */
  unwatch(channel: string, subscriber: Subscriber): void;
  /** Called once when a connection's socket has closed. */
  forget(connection: Connection, code: number): void;
}
