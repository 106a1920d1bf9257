import { readFileSync } from "node:fs";

import { ConfigError } from "./errors.js";
import { silentLogger, type Logger } from "./logger.js";
import { parseShards } from "./shard-set.js";

/** Options of one namespace: the part of a channel name before `:`. */
export interface NamespaceOptions {
  /** Messages kept per channel (a lower bound). 0 keeps none. */
  historySize?: number;
  /** How long history is kept after the channel's last publication, ms. */
  historyTtl?: number;
  /** Whether members are listed by `presence`. */
  presence?: boolean;
  /** Whether subscribers asking for presence get `join`/`leave` pushes. */
  joinLeave?: boolean;
  /** Whether clients may publish at all (the HTTP API always may). */
  clientPublish?: boolean;
  /**
   * Whether connections may subscribe without a matching grant. Defaults to
   * true in open mode (no token verification) and false otherwise.
   */
  anonymousSubscribe?: boolean;
  /** Like `anonymousSubscribe`, for publishing. */
  anonymousPublish?: boolean;
  /** How long an idempotency key is remembered, ms. */
  idempotencyWindow?: number;
}

/** Whether a node or a group of processes can serve; why not if not. */
export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
  /** The Redis shard the reason is about, when it is about one. */
  readonly shard?: string;
  /** Since when it is not ready, ms since the epoch. */
  readonly since?: number;
}

/**
 * What a node reports at `/readyz` and `/metrics` when it is one of a
 * group of processes on one port (`--workers`): the whole group's view.
 */
export interface GroupView {
  /** Ready when every member is. */
  readiness(): Promise<Readiness>;
  /** Metrics of every member, each sample labelled with its worker. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** Options of a node. Durations are in milliseconds, sizes in bytes. */
export interface NodeOptions {
  /** @default 8080 */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** Path of the WebSocket endpoint. @default "/ws" */
  path?: string;
  /** Key of the HTTP API; without one it answers loopback clients only. */
  apiKey?: string;
  /** HS256 secret for connection tokens. */
  tokenSecret?: string;
  /** PEM public key (RS256 or ES256) for connection tokens. */
  tokenPublicKey?: string;
  /** JWKS URL for connection tokens. */
  jwksUrl?: string;
  /** Required `aud` of tokens, when set. */
  tokenAudience?: string;
  /** Required `iss` of tokens, when set. */
  tokenIssuer?: string;
  /** Allow open mode on a non-loopback address. @default false */
  insecure?: boolean;
  /**
   * `memory`: one process, no dependencies. `redis`: nodes share positions,
   * history, fan-out and presence through Redis at `redisUrl`.
   * @default "memory"
   */
  engine?: "memory" | "redis";
  /**
   * Redis URL of the redis engine (a server, or any node of a Redis
   * Cluster, which is then used whole), or named shards
   * (`a=redis://...,b=redis://...`): each channel lives on the shard with
   * the highest CRC32 of `<name>:<channel>`. @default "redis://127.0.0.1:6379"
   */
  redisUrl?: string;
  /** How long a channel's position outlives its last publish (redis). */
  historyMetaTtl?: number;
  /** Time a node keeps a channel's topic after its last local leave. */
  unsubscribeLinger?: number;
  /** How often a node refreshes its liveness in Redis (redis). */
  livenessInterval?: number;
  /** How often a node reaps the presence of dead nodes (redis). */
  reapInterval?: number;
  /**
   * How often a canary checks the node's own subscription, and a Redis
   * Cluster's slot map is read again (redis).
   */
  canaryInterval?: number;
  /** How often stored tops are compared with what was delivered (redis). */
  positionCheckInterval?: number;
  /**
   * How long a node may stay deaf to a shard (its subscriber connection
   * down or silent while its commands work) while other nodes are alive
   * there, before it drains the clients of that shard's channels so they
   * move; 0 never does (redis). @default 30000
   */
  deafDrainAfter?: number;
  /** How often each Redis connection is PINGed (redis). @default 5000 */
  redisPingInterval?: number;
  /**
   * How long a PING may go unanswered before the connection is called dead
   * and replaced: a black-holed link is noticed within `redisPingInterval`
   * plus this (redis). @default 5000
   */
  redisTimeout?: number;
  /** A label for logs and the `connect` result; not an identity. */
  nodeId?: string;
  /** Exact `Origin` values allowed to upgrade; empty allows any. */
  allowedOrigins?: string[];
  /** Proxy addresses whose `X-Forwarded-For` is believed. */
  trustProxy?: string[];
  /** Sockets per client address; 0 means no limit. @default 0 */
  maxConnectionsPerIp?: number;
  /** @default 25000 */
  heartbeat?: number;
  /** @default 10000 */
  pongTimeout?: number;
  /** @default 10000 */
  connectTimeout?: number;
  /** Largest `data`, serialized. @default 65536 */
  maxMessageSize?: number;
  /** Largest WebSocket message; larger ones close 1009. @default 66560 */
  frameLimit?: number;
  /** Unsent bytes per connection before 4508. @default 1048576 */
  outboundBufferLimit?: number;
  /** Unsent bytes per process before the largest are closed. @default 1 GiB */
  outboundBudget?: number;
  /** Connections per process. @default open-file limit minus 1024 */
  maxConnections?: number;
  /** @default 128 */
  maxSubscriptions?: number;
  /** Client publishes per second. @default 20 */
  publishRate?: number;
  /** Client publishes allowed in a burst. @default 40 */
  publishBurst?: number;
  /**
   * `rate_limited` answers allowed within `rateViolationWindow`; the next
   * violation closes with 4429. @default 5
   */
  rateViolations?: number;
  /** @default 10000 */
  rateViolationWindow?: number;
  /** History of namespaces that do not set it. @default 100 */
  historySize?: number;
  /** @default 300000 */
  historyTtl?: number;
  /** Bytes of history the memory engine keeps in all. @default 256 MiB */
  historyBudget?: number;
  /** @default 300 */
  recoveryMaxPublications?: number;
  /** @default 300 */
  historyMaxLimit?: number;
  /** @default 300000 */
  idempotencyWindow?: number;
  /**
   * How long the presence entry of a connection that vanished (or was told
   * to reconnect) waits for its session to come back before its leave.
   * @default 30000
   */
  presenceTtl?: number;
  /** @default 1000 */
  presenceMaxMembers?: number;
  /** @default 100 */
  joinLeaveMaxMembers?: number;
  /** Time a connection keeps after its token's `exp`. @default 5000 */
  tokenGrace?: number;
  /** @default 5000 */
  drainDelay?: number;
  /** @default 10000 */
  drainWindow?: number;
  /** @default 20000 */
  drainTimeout?: number;
  /** Options per namespace; the key "" is the default namespace. */
  namespaces?: Record<string, NamespaceOptions>;
  /** @default a logger that discards everything */
  logger?: Logger;
  /** Set by `switchboard start --workers`; a single node needs none. */
  group?: GroupView;
}

/** How a CLI reads an option's value. */
export type OptionKind =
  "integer" | "duration" | "bytes" | "string" | "boolean" | "list";

/** One configurable option, as the CLI, environment and config file see it. */
export interface OptionSpec {
  readonly name: keyof NodeOptions;
  readonly kind: OptionKind;
  readonly description: string;
}

/** Every option settable from a flag, `SWITCHBOARD_*` or a config file. */
export const OPTION_SPECS: readonly OptionSpec[] = [
  { name: "port", kind: "integer", description: "port to listen on" },
  { name: "host", kind: "string", description: "address to listen on" },
  { name: "path", kind: "string", description: "WebSocket endpoint path" },
  { name: "apiKey", kind: "string", description: "HTTP API bearer key" },
  { name: "tokenSecret", kind: "string", description: "HS256 token secret" },
  {
    name: "tokenPublicKey",
    kind: "string",
    description: "PEM public key (RS256/ES256), or @file to read it",
  },
  { name: "jwksUrl", kind: "string", description: "JWKS URL for tokens" },
  { name: "tokenAudience", kind: "string", description: "required aud" },
  { name: "tokenIssuer", kind: "string", description: "required iss" },
  {
    name: "insecure",
    kind: "boolean",
    description: "allow open mode on a non-loopback address",
  },
  { name: "engine", kind: "string", description: "engine: memory or redis" },
  {
    name: "redisUrl",
    kind: "string",
    description:
      "Redis URL (a server or a cluster node), or shards as " +
      "name=URL,name=URL (redis engine)",
  },
  {
    name: "historyMetaTtl",
    kind: "duration",
    description: "position kept after the last publish (redis)",
  },
  {
    name: "unsubscribeLinger",
    kind: "duration",
    description: "topic kept after the last local subscriber (redis)",
  },
  {
    name: "livenessInterval",
    kind: "duration",
    description: "node liveness refresh in Redis (redis)",
  },
  {
    name: "reapInterval",
    kind: "duration",
    description: "how often dead nodes' presence is reaped (redis)",
  },
  {
    name: "canaryInterval",
    kind: "duration",
    description:
      "canary via the node's own subscription; slot map read (redis)",
  },
  {
    name: "positionCheckInterval",
    kind: "duration",
    description: "stored tops compared with what was delivered (redis)",
  },
  {
    name: "deafDrainAfter",
    kind: "duration",
    description: "deaf time before clients are moved away (0: never; redis)",
  },
  {
    name: "redisPingInterval",
    kind: "duration",
    description: "PING of each Redis connection (redis)",
  },
  {
    name: "redisTimeout",
    kind: "duration",
    description: "unanswered PING before a connection is replaced (redis)",
  },
  { name: "nodeId", kind: "string", description: "label of this node" },
  {
    name: "allowedOrigins",
    kind: "list",
    description: "comma-separated Origins allowed to connect",
  },
  {
    name: "trustProxy",
    kind: "list",
    description: "comma-separated proxy addresses trusted for X-Forwarded-For",
  },
  {
    name: "maxConnectionsPerIp",
    kind: "integer",
    description: "sockets per client address (0: no limit)",
  },
  { name: "heartbeat", kind: "duration", description: "server ping interval" },
  { name: "pongTimeout", kind: "duration", description: "wait for a pong" },
  {
    name: "connectTimeout",
    kind: "duration",
    description: "wait for the connect frame",
  },
  {
    name: "maxMessageSize",
    kind: "bytes",
    description: "largest data, WebSocket and HTTP",
  },
  { name: "frameLimit", kind: "bytes", description: "largest frame" },
  {
    name: "outboundBufferLimit",
    kind: "bytes",
    description: "unsent bytes per connection before close 4508",
  },
  {
    name: "outboundBudget",
    kind: "bytes",
    description: "unsent bytes per process",
  },
  {
    name: "maxConnections",
    kind: "integer",
    description: "connections per process",
  },
  {
    name: "maxSubscriptions",
    kind: "integer",
    description: "subscriptions per connection",
  },
  {
    name: "publishRate",
    kind: "integer",
    description: "client publishes per second",
  },
  { name: "publishBurst", kind: "integer", description: "publish burst" },
  {
    name: "rateViolations",
    kind: "integer",
    description: "rate_limited answers before close 4429",
  },
  {
    name: "rateViolationWindow",
    kind: "duration",
    description: "window counting rate violations",
  },
  {
    name: "historySize",
    kind: "integer",
    description: "messages kept per channel",
  },
  {
    name: "historyTtl",
    kind: "duration",
    description: "history kept after the last publish",
  },
  {
    name: "historyBudget",
    kind: "bytes",
    description: "history bytes kept in all (memory engine)",
  },
  {
    name: "recoveryMaxPublications",
    kind: "integer",
    description: "most messages recovered at subscribe",
  },
  {
    name: "historyMaxLimit",
    kind: "integer",
    description: "most messages per history request",
  },
  {
    name: "idempotencyWindow",
    kind: "duration",
    description: "how long publish keys are remembered",
  },
  {
    name: "presenceTtl",
    kind: "duration",
    description: "presence kept for a vanished connection's session",
  },
  {
    name: "presenceMaxMembers",
    kind: "integer",
    description: "longest presence list",
  },
  {
    name: "joinLeaveMaxMembers",
    kind: "integer",
    description: "members above which join/leave stop",
  },
  {
    name: "tokenGrace",
    kind: "duration",
    description: "time allowed after token exp",
  },
  {
    name: "drainDelay",
    kind: "duration",
    description: "wait before closing the listener",
  },
  {
    name: "drainWindow",
    kind: "duration",
    description: "spread of reconnect advice",
  },
  { name: "drainTimeout", kind: "duration", description: "drain deadline" },
];

/** Every option name a node takes; others are refused, typos included. */
const KNOWN_OPTIONS: ReadonlySet<string> = new Set([
  ...OPTION_SPECS.map((spec) => spec.name),
  "namespaces",
  "logger",
  "group",
]);

/** Extra descriptors the file limit leaves for logs, Redis and the like. */
const RESERVED_FILES = 1024;

/** Used when the open-file limit cannot be read (not Linux). */
const FALLBACK_MAX_CONNECTIONS = 10_000;

/** Options that have a fixed default. */
type DefaultedOptions = Required<
  Omit<
    NodeOptions,
    | "apiKey"
    | "tokenSecret"
    | "tokenPublicKey"
    | "jwksUrl"
    | "tokenAudience"
    | "tokenIssuer"
    | "nodeId"
    | "maxConnections"
    | "namespaces"
    | "logger"
    | "group"
  >
>;

/** Defaults of every option but `maxConnections`, which is derived. */
export const DEFAULTS: Readonly<DefaultedOptions> = {
  port: 8080,
  host: "127.0.0.1",
  path: "/ws",
  insecure: false,
  engine: "memory",
  redisUrl: "redis://127.0.0.1:6379",
  historyMetaTtl: 7 * 24 * 3_600_000,
  unsubscribeLinger: 5_000,
  livenessInterval: 10_000,
  reapInterval: 10_000,
  canaryInterval: 2_000,
  positionCheckInterval: 30_000,
  deafDrainAfter: 30_000,
  redisPingInterval: 5_000,
  redisTimeout: 5_000,
  allowedOrigins: [],
  trustProxy: [],
  maxConnectionsPerIp: 0,
  heartbeat: 25_000,
  pongTimeout: 10_000,
  connectTimeout: 10_000,
  maxMessageSize: 64 * 1024,
  frameLimit: 65 * 1024,
  outboundBufferLimit: 1024 * 1024,
  outboundBudget: 1024 * 1024 * 1024,
  maxSubscriptions: 128,
  publishRate: 20,
  publishBurst: 40,
  rateViolations: 5,
  rateViolationWindow: 10_000,
  historySize: 100,
  historyTtl: 300_000,
  historyBudget: 256 * 1024 * 1024,
  recoveryMaxPublications: 300,
  historyMaxLimit: 300,
  idempotencyWindow: 300_000,
  presenceTtl: 30_000,
  presenceMaxMembers: 1000,
  joinLeaveMaxMembers: 100,
  tokenGrace: 5000,
  drainDelay: 5000,
  drainWindow: 10_000,
  drainTimeout: 20_000,
};

/** Namespace options with every field decided. */
export type ResolvedNamespace = Required<NamespaceOptions>;

/** Node options after defaults and checks. */
export interface ResolvedOptions extends Omit<
  Required<NodeOptions>,
  | "apiKey"
  | "tokenSecret"
  | "tokenPublicKey"
  | "jwksUrl"
  | "tokenAudience"
  | "tokenIssuer"
  | "nodeId"
  | "namespaces"
  | "group"
> {
  apiKey: string | undefined;
  tokenSecret: string | undefined;
  tokenPublicKey: string | undefined;
  jwksUrl: string | undefined;
  tokenAudience: string | undefined;
  tokenIssuer: string | undefined;
  nodeId: string;
  /** True when no token verification is configured. */
  open: boolean;
  namespaces: ReadonlyMap<string, ResolvedNamespace>;
  logger: Logger;
  group: GroupView | undefined;
}

/**
 * Merges `options` over the defaults and checks them. Throws a
 * `ConfigError` naming the option at the first bad value.
 */
export function resolveOptions(options: NodeOptions = {}): ResolvedOptions {
  const merged = { ...DEFAULTS, ...withoutUndefined(options) };
  const open = !(merged.tokenSecret || merged.tokenPublicKey || merged.jwksUrl);

  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw new ConfigError(`unknown option "${name}"`);
    }
  }
  for (const spec of OPTION_SPECS) {
    checkValue(spec, merged[spec.name]);
  }
  if (
    merged.engine === "redis" &&
    merged.livenessInterval >= merged.presenceTtl
  ) {
    throw new ConfigError("livenessInterval must be below presenceTtl");
  }
  for (const name of [
    "frameLimit",
    "maxMessageSize",
    "pongTimeout",
    "livenessInterval",
    "reapInterval",
    "canaryInterval",
    "positionCheckInterval",
    "redisPingInterval",
    "redisTimeout",
  ] as const) {
    if (merged[name] < 1) throw new ConfigError(`${name} must be at least 1`);
  }
  if (
    merged.jwksUrl !== undefined &&
    !/^https?:\/\/[^/]/.test(merged.jwksUrl)
  ) {
    throw new ConfigError(
      `jwksUrl must be an http(s) URL, got "${merged.jwksUrl}"`,
    );
  }
  if (merged.engine !== "memory" && merged.engine !== "redis") {
    throw new ConfigError(
      `engine must be "memory" or "redis", got "${merged.engine}"`,
    );
  }
  if (merged.engine === "redis") parseShards(merged.redisUrl);
  if (merged.port > 65_535) {
    throw new ConfigError(`port must be at most 65535, got ${merged.port}`);
  }
  if (!merged.path.startsWith("/")) {
    throw new ConfigError(`path must start with "/", got "${merged.path}"`);
  }
  if (merged.frameLimit < merged.maxMessageSize) {
    throw new ConfigError("frameLimit must be at least maxMessageSize");
  }
  const keySources = [
    merged.tokenSecret,
    merged.tokenPublicKey,
    merged.jwksUrl,
  ];
  if (keySources.filter(Boolean).length > 1) {
    throw new ConfigError(
      "set only one of tokenSecret, tokenPublicKey and jwksUrl",
    );
  }

  return {
    ...merged,
    apiKey: merged.apiKey,
    tokenSecret: merged.tokenSecret,
    tokenPublicKey: readKey(merged.tokenPublicKey),
    jwksUrl: merged.jwksUrl,
    tokenAudience: merged.tokenAudience,
    tokenIssuer: merged.tokenIssuer,
    nodeId: merged.nodeId ?? `node-${process.pid}`,
    maxConnections: merged.maxConnections ?? defaultMaxConnections(),
    open,
    namespaces: resolveNamespaces(merged, open),
    logger: merged.logger ?? silentLogger,
    group: merged.group,
  };
}

/** The options of the namespace `name`, falling back to the default one. */
export function namespaceOptions(
  options: ResolvedOptions,
  name: string,
): ResolvedNamespace {
  return (options.namespaces.get(name) ?? options.namespaces.get(""))!;
}

function resolveNamespaces(
  merged: NodeOptions & DefaultedOptions,
  open: boolean,
): Map<string, ResolvedNamespace> {
  const base: ResolvedNamespace = {
    historySize: merged.historySize,
    historyTtl: merged.historyTtl,
    presence: true,
    joinLeave: true,
    clientPublish: true,
    anonymousSubscribe: open,
    anonymousPublish: open,
    idempotencyWindow: merged.idempotencyWindow,
  };
  const configured = merged.namespaces ?? {};
  const fallback = { ...base, ...checkNamespace("", configured[""] ?? {}) };
  const resolved = new Map<string, ResolvedNamespace>([["", fallback]]);
  for (const [name, ns] of Object.entries(configured)) {
    if (name === "") continue;
    if (!/^[A-Za-z0-9_\-.@=/]+$/.test(name)) {
      throw new ConfigError(`namespace "${name}" is not a channel prefix`);
    }
    resolved.set(name, { ...fallback, ...checkNamespace(name, ns) });
  }
  return resolved;
}

const NAMESPACE_KINDS: Record<keyof NamespaceOptions, "count" | "boolean"> = {
  historySize: "count",
  historyTtl: "count",
  idempotencyWindow: "count",
  presence: "boolean",
  joinLeave: "boolean",
  clientPublish: "boolean",
  anonymousSubscribe: "boolean",
  anonymousPublish: "boolean",
};

function checkNamespace(name: string, ns: unknown): NamespaceOptions {
  if (typeof ns !== "object" || ns === null || Array.isArray(ns)) {
    throw new ConfigError(`namespaces.${name} must be an object`);
  }
  for (const [key, value] of Object.entries(ns)) {
    const kind = NAMESPACE_KINDS[key as keyof NamespaceOptions];
    if (kind === undefined) {
      throw new ConfigError(`namespaces.${name}: unknown option "${key}"`);
    }
    const ok = kind === "boolean" ? typeof value === "boolean" : isCount(value);
    if (value !== undefined && !ok) {
      const expected =
        kind === "boolean" ? "a boolean" : "a non-negative integer";
      throw new ConfigError(`namespaces.${name}.${key} must be ${expected}`);
    }
  }
  return withoutUndefined(ns as NamespaceOptions);
}

/** setTimeout's largest delay: longer ones fire at once. */
const MAX_DURATION_MS = 2 ** 31 - 1;

function checkValue(spec: OptionSpec, value: unknown): void {
  if (value === undefined) return;
  if (spec.kind === "string" && value === "") {
    throw new ConfigError(`${spec.name} must not be empty`);
  }
  if (
    spec.kind === "duration" &&
    typeof value === "number" &&
    value > MAX_DURATION_MS
  ) {
    throw new ConfigError(
      `${spec.name} must be at most ${MAX_DURATION_MS} ms (about 24 days)`,
    );
  }
  const ok =
    spec.kind === "string"
      ? typeof value === "string"
      : spec.kind === "boolean"
        ? typeof value === "boolean"
        : spec.kind === "list"
          ? Array.isArray(value) && value.every((v) => typeof v === "string")
          : isCount(value);
  if (!ok) {
    const expected =
      spec.kind === "list"
        ? "a list of strings"
        : spec.kind === "string" || spec.kind === "boolean"
          ? `a ${spec.kind}`
          : "a non-negative integer";
    throw new ConfigError(`${spec.name} must be ${expected}`);
  }
}

function isCount(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function readKey(key: string | undefined): string | undefined {
  if (key === undefined || !key.startsWith("@")) return key;
  try {
    return readFileSync(key.slice(1), "utf8");
  } catch (cause) {
    throw new ConfigError(`tokenPublicKey: cannot read ${key.slice(1)}`, {
      cause,
    });
  }
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(value).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}

/** Open-file soft limit minus a reserve, read from /proc on Linux. */
function defaultMaxConnections(): number {
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    if (Number.isSafeInteger(soft) && soft > 0) {
      // A small limit keeps half for sockets rather than going negative.
      return soft > 2 * RESERVED_FILES
        ? soft - RESERVED_FILES
        : Math.floor(soft / 2);
    }
  } catch {
    // Not Linux: fall through to the fixed default.
  }
  return FALLBACK_MAX_CONNECTIONS;
}
