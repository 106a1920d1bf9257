/**
 * Schema 1 of the Redis layout, shared by the redis engine and the server
 * SDK's Redis publisher. Every key of a channel and its topic carry the
 * hash tag `{<channel>}`, so they share a slot on a Redis Cluster.
 *
 *   sb:1:{C}           pub/sub topic of channel C
 *   sb:1:{C}:m         hash: e (channel epoch), t (top offset)
 *   sb:1:{C}:s         stream of publications, ids `<offset>-0`,
 *                      fields d (data JSON) and p (publisher JSON or "")
 *   sb:1:{C}:k:<key>   "<epoch> <offset>" of an idempotency key
 *   sb:1:{C}:p         hash: client id -> presence entry JSON
 *                      {user, session, inc}
 *   sb:1:{C}:u         hash: user key -> entries in the channel
 *   sb:1:{C}:l         hash: session -> client id of an entry that
 *                      lingers, waiting for its session to return
 *   sb:1:shard         hash: gen (generation), run (run id), repl
 *                      (replication id) of the Redis server last seen
 *   sb:1:shards        the shard set of the fleet using this server, as
 *                      "<name>=<host:port/db>,..." sorted; with a TTL
 *   sb:1:control       pub/sub topic of fleet-wide control commands, on
 *                      the first shard by name (a shard channel of its
 *                      own slot on a Redis Cluster): JSON {inc, type,
 *                      user, reconnect?, channel?}
 *   sb:1:nodes         set of node incarnations that hold presence
 *   sb:1:node:<inc>    liveness key of an incarnation, with a TTL
 *   sb:1:node:<inc>:c  set of channels where it holds presence
 *
 * On a Redis Cluster, topics are shard channels (SSUBSCRIBE, SPUBLISH) and
 * sb:1:shard is not used: a master's generation comes from its run and
 * replication ids alone.
 *
 * Topic payloads start with the schema and a kind, then a newline:
 *   "1 m <epoch> <offset> <publisher length>\n<publisher JSON><data JSON>"
 *   "1 j <users>\n<JSON {user, client}>"  (join; "1 l" for leave)
 */

/** Version of the key layout and payloads; part of every key. */
export const REDIS_SCHEMA = 1;

const PREFIX = `sb:${REDIS_SCHEMA}:`;

/** The keys and topic of one channel. */
export interface ChannelKeys {
  readonly topic: string;
  readonly meta: string;
  readonly stream: string;
  readonly presence: string;
  readonly users: string;
  readonly lingering: string;
  /** The key remembering an idempotency key's result. */
  idempotency(key: string): string;
}

/** The keys of `channel`, all in its hash slot. */
export function channelKeys(channel: string): ChannelKeys {
  const base = `${PREFIX}{${channel}}`;
  return {
    topic: base,
    meta: `${base}:m`,
    stream: `${base}:s`,
    presence: `${base}:p`,
    users: `${base}:u`,
    lingering: `${base}:l`,
    idempotency: (key) => `${base}:k:${key}`,
  };
}

/** The channel of a topic, or undefined for a topic of another schema. */
export function topicChannel(topic: string): string | undefined {
  if (!topic.startsWith(`${PREFIX}{`) || !topic.endsWith("}")) return;
  return topic.slice(PREFIX.length + 1, -1);
}

/** Where nodes record the shard's generation and the server they saw. */
export const SHARD_KEY = `${PREFIX}shard`;

/**
 * Records the Redis server's run id and replication id; when either is not
 * the one recorded (a restart or a failover), advances the generation, so
 * offsets given out before can never be reused under the same epoch.
 *
 * KEYS: shard
 * ARGV: run id, replication id
 * Returns the generation.
 */
export const GENERATION_SCRIPT = `
local seen = redis.call("HMGET", KEYS[1], "gen", "run", "repl")
if seen[1] and seen[2] == ARGV[1] and seen[3] == ARGV[2] then
  return tonumber(seen[1])
end
local gen = redis.call("HINCRBY", KEYS[1], "gen", 1)
redis.call("HSET", KEYS[1], "run", ARGV[1], "repl", ARGV[2])
return gen
`;

/** The topic every node listens to for fleet-wide control commands. */
export const CONTROL_TOPIC = `${PREFIX}control`;

/** Where nodes record the shard set they place channels with. */
export const SHARD_SET_KEY = `${PREFIX}shards`;

/**
 * Records the shard set a node places channels with, unless another set
 * is recorded; refreshes its TTL when it is the same.
 *
 * KEYS: shard set
 * ARGV: the node's shard set fingerprint, TTL ms
 * Returns the recorded fingerprint: the node's own, or the other one.
 */
export const SHARD_SET_SCRIPT = `
local seen = redis.call("GET", KEYS[1])
if seen and seen ~= ARGV[1] then return seen end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return ARGV[1]
`;

/** The set of node incarnations that hold presence entries. */
export const NODES_KEY = `${PREFIX}nodes`;

/** The keys of one node incarnation. */
export function nodeKeys(incarnation: string): {
  readonly alive: string;
  readonly channels: string;
} {
  return {
    alive: `${PREFIX}node:${incarnation}`,
    channels: `${PREFIX}node:${incarnation}:c`,
  };
}

/** Pattern matching every channel's meta key, for SCAN. */
export const META_PATTERN = `${PREFIX}{*}:m`;

/**
 * Publishes atomically: checks the idempotency key, creates the channel's
 * meta with the given epoch if it has none, advances the top, appends to
 * the stream (trimmed to about its size, kept its TTL after the last
 * publish), remembers the key, and publishes on the topic.
 *
 * KEYS: meta, stream, idempotency key
 * ARGV: data, publisher, history size, history TTL ms, meta TTL ms,
 *       idempotency window ms (0: no key), new epoch, topic
 * Returns {epoch, offset, duplicate (0|1)}.
 */
export const PUBLISH_SCRIPT = `
local window = tonumber(ARGV[6])
if window > 0 then
  local seen = redis.call("GET", KEYS[3])
  if seen then
    local space = string.find(seen, " ", 1, true)
    return {string.sub(seen, 1, space - 1),
      tonumber(string.sub(seen, space + 1)), 1}
  end
end
local epoch = redis.call("HGET", KEYS[1], "e")
if not epoch then
  epoch = ARGV[7]
  redis.call("HSET", KEYS[1], "e", epoch)
end
local top = redis.call("HINCRBY", KEYS[1], "t", 1)
redis.call("PEXPIRE", KEYS[1], ARGV[5])
local size = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if size > 0 and ttl > 0 then
  redis.call("XADD", KEYS[2], "MAXLEN", "~", size, top .. "-0",
    "d", ARGV[1], "p", ARGV[2])
  redis.call("PEXPIRE", KEYS[2], ttl)
else
  redis.call("DEL", KEYS[2])
end
if window > 0 then
  redis.call("SET", KEYS[3], epoch .. " " .. top, "PX", window)
end
redis.call("PUBLISH", ARGV[8], "1 m " .. epoch .. " " .. top .. " " ..
  string.len(ARGV[2]) .. "\\n" .. ARGV[2] .. ARGV[1])
return {epoch, top, 0}
`;

/**
 * Reads a channel's position and, with a limit, stored entries, in one
 * step; creates the meta with the given epoch if the channel has none.
 *
 * KEYS: meta, stream
 * ARGV: since epoch ("" for none), since offset, limit, reverse (0|1),
 *       new epoch, meta TTL ms
 * Returns {epoch, top, oldest, entries}; entries as XRANGE gives them.
 */
export const READ_SCRIPT = `
local epoch = redis.call("HGET", KEYS[1], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("HSET", KEYS[1], "e", epoch, "t", 0)
  redis.call("PEXPIRE", KEYS[1], ARGV[6])
end
local top = tonumber(redis.call("HGET", KEYS[1], "t") or "0")
local oldest = top + 1
local first = redis.call("XRANGE", KEYS[2], "-", "+", "COUNT", 1)
if #first > 0 then
  oldest = tonumber(string.match(first[1][1], "^(%d+)"))
end
local limit = tonumber(ARGV[3])
local entries = {}
if limit > 0 then
  local after = 0
  if ARGV[1] == epoch then after = tonumber(ARGV[2]) end
  if ARGV[4] == "1" then
    entries = redis.call("XREVRANGE", KEYS[2], "+", "(" .. after .. "-0",
      "COUNT", limit)
  else
    entries = redis.call("XRANGE", KEYS[2], "(" .. after .. "-0", "+",
      "COUNT", limit)
  end
end
return {epoch, top, oldest, entries}
`;

/**
 * Adds a presence entry. An entry of the same session and user that
 * lingers is replaced silently; otherwise the user's first entry
 * publishes a join.
 *
 * KEYS: presence, users, lingering
 * ARGV: client, user, entry JSON, topic, join event JSON, session
 * Returns the user's entry count, 0 when the client was listed, -1 when
 * a lingering entry was replaced.
 */
export const PRESENCE_ADD_SCRIPT = `
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then return 0 end
local previous = redis.call("HGET", KEYS[3], ARGV[6])
if previous then
  redis.call("HDEL", KEYS[3], ARGV[6])
  local old = redis.call("HGET", KEYS[1], previous)
  if old and cjson.decode(old).user == ARGV[2] then
    redis.call("HDEL", KEYS[1], previous)
    redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
    return -1
  end
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
local count = redis.call("HINCRBY", KEYS[2], ARGV[2], 1)
if count == 1 then
  redis.call("PUBLISH", ARGV[4],
    "1 j " .. redis.call("HLEN", KEYS[2]) .. "\\n" .. ARGV[5])
end
return count
`;

/**
 * Removes a presence entry; the user's last entry publishes a leave.
 *
 * KEYS: presence, users, lingering
 * ARGV: client, user, topic, leave event JSON, session
 * Returns the user's remaining count, or -1 when the client was not there.
 */
export const PRESENCE_REMOVE_SCRIPT = `
if redis.call("HDEL", KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call("HGET", KEYS[3], ARGV[5]) == ARGV[1] then
  redis.call("HDEL", KEYS[3], ARGV[5])
end
local count = redis.call("HINCRBY", KEYS[2], ARGV[2], -1)
if count <= 0 then
  redis.call("HDEL", KEYS[2], ARGV[2])
  redis.call("PUBLISH", ARGV[3],
    "1 l " .. redis.call("HLEN", KEYS[2]) .. "\\n" .. ARGV[4])
end
return count
`;

/**
 * Removes every entry of a dead node incarnation from one channel, in one
 * step, publishing a leave for each user left with no entry. Run again,
 * it finds nothing: each leave is sent once.
 *
 * KEYS: presence, users, lingering
 * ARGV: incarnation, topic
 * Returns how many entries it removed.
 */
export const PRESENCE_REAP_SCRIPT = `
local entries = redis.call("HGETALL", KEYS[1])
local removed = 0
for i = 1, #entries, 2 do
  local client = entries[i]
  local entry = cjson.decode(entries[i + 1])
  if entry.inc == ARGV[1] then
    redis.call("HDEL", KEYS[1], client)
    if redis.call("HGET", KEYS[3], entry.session) == client then
      redis.call("HDEL", KEYS[3], entry.session)
    end
    removed = removed + 1
    local count = redis.call("HINCRBY", KEYS[2], entry.user, -1)
    if count <= 0 then
      redis.call("HDEL", KEYS[2], entry.user)
      redis.call("PUBLISH", ARGV[2],
        "1 l " .. redis.call("HLEN", KEYS[2]) .. "\\n" ..
        cjson.encode({user = entry.user, client = client}))
    end
  end
end
return removed
`;

/**
 * The variant of one of the scripts above for a Redis Cluster: it
 * publishes with SPUBLISH on the topic's shard channel, which nodes hear
 * through SSUBSCRIBE on the master of the channel's slot.
 */
export function shardedScript(script: string): string {
  return script.replaceAll('redis.call("PUBLISH",', 'redis.call("SPUBLISH",');
}

/** A decoded topic payload. */
export type TopicPayload =
  | {
      readonly kind: "message";
      readonly epoch: string;
      readonly offset: number;
      /** Publisher JSON, or "" when published by the server. */
      readonly publisher: string;
      readonly data: string;
    }
  | {
      readonly kind: "join" | "leave";
      readonly users: number;
      readonly user: string;
      readonly client: string;
    };

/**
 * Decodes a topic payload without parsing `data`; undefined for another
 * schema or a malformed payload.
 */
export function decodeTopicPayload(payload: string): TopicPayload | undefined {
  const newline = payload.indexOf("\n");
  if (newline === -1 || !payload.startsWith(`${REDIS_SCHEMA} `)) return;
  const head = payload.slice(0, newline).split(" ");
  const body = payload.slice(newline + 1);
  if (head[1] === "m" && head.length === 5) {
    const offset = Number(head[3]);
    const length = Number(head[4]);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) return;
    return {
      kind: "message",
      epoch: head[2]!,
      offset,
      publisher: body.slice(0, length),
      data: body.slice(length),
    };
  }
  if ((head[1] === "j" || head[1] === "l") && head.length === 3) {
    try {
      const { user, client } = JSON.parse(body) as Record<string, unknown>;
      if (typeof user !== "string" || typeof client !== "string") return;
      return {
        kind: head[1] === "j" ? "join" : "leave",
        users: Number(head[2]),
        user,
        client,
      };
    } catch {
      return undefined;
    }
  }
  return undefined;
}
