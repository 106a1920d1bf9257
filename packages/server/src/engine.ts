import type {
  Position,
  PresenceMember,
  Publisher,
} from "@switchboard/protocol";

/**
 * A message as an engine stores it. `data` stays serialized JSON from the
 * publish to every socket, so no node parses it again.
 */
export interface Publication {
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  readonly data: string;
  readonly publisher: Publisher | undefined;
}

/** What a publish stores and how long it keeps it. */
export interface PublishOptions {
  readonly key: string | undefined;
  readonly publisher: Publisher | undefined;
  readonly historySize: number;
  readonly historyTtl: number;
  readonly idempotencyWindow: number;
}

/** The outcome of a publish. */
export interface PublishOutcome extends Position {
  readonly duplicate: boolean;
}

/** Which stored entries a read returns. */
export interface ReadOptions {
  /** Entries above this position; from another epoch, from the oldest. */
  readonly since: Position | undefined;
  /** How many entries at most; 0 reads the position only. */
  readonly limit: number;
  /** Take the newest entries of the selection, newest first. */
  readonly reverse: boolean;
}

/** The outcome of a read: the stream's position and the selected entries. */
export interface ReadOutcome extends Position {
  /** Offset of the oldest entry still stored; `offset + 1` when none is. */
  readonly oldest: number;
  readonly publications: readonly Publication[];
}

/** A presence entry: one connection of one user in one channel. */
export interface PresenceEntry {
  readonly channel: string;
  readonly client: string;
  /** The user key: the token's `sub`, or `anon:` and a session hash. */
  readonly user: string;
  /** The SDK's session id: a returning session replaces its entry. */
  readonly session: string;
}

/** A user's first entry arrived in a channel, or its last one left. */
export interface PresenceEvent {
  readonly type: "join" | "leave";
  readonly channel: string;
  readonly user: string;
  readonly client: string;
  /** Users in the channel after the change, to cap join/leave pushes. */
  readonly users: number;
}

/** Members of a channel, capped. */
export interface PresenceList {
  readonly members: readonly PresenceMember[];
  readonly truncated: boolean;
}

/**
 * A command of the HTTP API that every node of a fleet applies to its own
 * connections of the user.
 */
export type ControlCommand =
  | {
      readonly type: "disconnect";
      readonly user: string;
      readonly reconnect: boolean;
    }
  | {
      readonly type: "unsubscribe";
      readonly user: string;
      readonly channel: string;
    };

/** Where an engine delivers what it hears, per channel in offset order. */
export interface EngineHandlers {
  publication(publication: Publication): void;
  presence(event: PresenceEvent): void;
  /**
   * Messages of the channel were lost and cannot be read back: local
   * subscribers must resubscribe and recover, or learn they cannot.
   */
  insufficient(channel: string): void;
  /**
   * This node has been deaf to these channels for `deafDrainAfter` while
   * other nodes hear them: their local subscribers should move.
   */
  deaf(channels: readonly string[]): void;
  /** Another node sent a control command. */
  control(command: ControlCommand): void;
}

/** Whether an engine can serve; when not, why and since when. */
export interface EngineHealth {
  readonly ready: boolean;
  readonly reason?: string;
  /** The shard the reason is about, when the engine has shards. */
  readonly shard?: string;
  /** When the engine entered this state, ms since the epoch. */
  readonly since: number;
}

/**
 * An engine owns positions, history, fan-out between nodes and presence.
 * The node owns sockets, sessions, local subscriber sets and limits.
 */
export interface Engine {
  /** Starts delivering to `handlers`. */
  start(handlers: EngineHandlers): Promise<void>;
  /** Stops; pending calls may fail. */
  close(): Promise<void>;
  /** Whether the engine can serve now: what `/readyz` reports. */
  health(): EngineHealth;
  /** Stores and fans out one message, atomically with its position. */
  publish(
    channel: string,
    data: string,
    options: PublishOptions,
  ): Promise<PublishOutcome>;
  /** Reads the position and, with a limit, stored entries in one step. */
  read(channel: string, options: ReadOptions): Promise<ReadOutcome>;
  /** Resolves once this node receives every later publication of it. */
  subscribe(channel: string): Promise<void>;
  /** This node no longer needs the channel's publications. */
  unsubscribe(channel: string): void;
  /**
   * Adds an entry; a user's first entry is announced as a join. An entry
   * of the same session and channel that lingers is replaced silently.
   */
  addPresence(entry: PresenceEntry): Promise<void>;
  /**
   * Removes an entry, at once or after `linger` ms unless its session
   * comes back; a user's last entry is announced as a leave.
   */
  removePresence(entry: PresenceEntry, linger: number): Promise<void>;
  /** Lists up to `max` members of a channel. */
  presence(channel: string, max: number): Promise<PresenceList>;
  /** Channels that have subscribers or stored history. */
  channels(): Promise<string[]>;
  /**
   * Sends a control command to every other node; the sender applies it
   * to its own connections itself.
   */
  control(command: ControlCommand): Promise<void>;
}
