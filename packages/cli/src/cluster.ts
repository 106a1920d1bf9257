import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { parseArgs } from "node:util";

import { resolveOptions } from "@switchboard/server";

import { loadSettings, startFlags } from "./config.js";
import { UsageError } from "./errors.js";
import {
  findExecutable,
  isExecutable,
  runNginx,
  type RunningNginx,
} from "./nginx-runner.js";
import { parseValue } from "./values.js";

const BIN = new URL("../bin/switchboard.js", import.meta.url).pathname;

/** Nodes `cluster` runs by default. */
export const DEFAULT_CLUSTER_NODES = 3;

/** Port of the first node. */
export const DEFAULT_BASE_PORT = 8081;

/** Port nginx listens on. */
export const DEFAULT_PROXY_PORT = 8080;

/** Most nodes one `cluster` runs. */
const MAX_NODES = 64;

/** Connections per nginx worker: a development fleet is small. */
const WORKER_CONNECTIONS = 4096;

/** How long a node may take to print that it listens: Redis wait + 5 s. */
const NODE_START_TIMEOUT_MS = 15_000;

/** How long nginx may take to stop gracefully once the nodes are gone. */
const NGINX_STOP_TIMEOUT_MS = 5_000;

const HELP = `Usage: switchboard cluster [--nodes N] [options]

For development: runs N nodes (switchboard start --engine redis) on
consecutive ports from --base-port, sharing one Redis (a server, named
shards or a Redis Cluster), and, when nginx is on PATH, nginx in front of
them on --port with the config of \`switchboard nginx\` (kept in a temp
directory). Without nginx it says so and runs the nodes only.

Options:
  --nodes <n>          how many nodes (default ${DEFAULT_CLUSTER_NODES})
  --base-port <port>   port of the first node (default ${DEFAULT_BASE_PORT})
  --port <port>        where nginx listens (default ${DEFAULT_PROXY_PORT})
  --host <address>     where nginx and the nodes listen (default 127.0.0.1)
  --redis-url <url>    the Redis of every node: redis://host:port, a node
                       of a Redis Cluster, or a=redis://...,b=redis://...
                       (default redis://127.0.0.1:6379)
  --nginx <file>       the nginx binary (default nginx on PATH)
  --no-nginx           run the nodes only
  --node-id <id>       label prefix of the nodes: <id>-1, <id>-2...
                       (default node)
  -h, --help           this help

Every other option of \`switchboard start\` is passed to each node, e.g.
--token-secret, --api-key, --heartbeat (switchboard start --help); so are
SWITCHBOARD_* variables. With nginx, the nodes trust its forwarded-for
header (--trust-proxy) unless told otherwise. Through nginx the HTTP API
needs --api-key; without one, use a node's own port.

SIGTERM or SIGINT drains every node, then stops nginx, and exits 0; a
second signal stops everything at once and exits 1.
`;

/** Flags of `cluster` itself; every other flag of `start` is passed on. */
const OWN_FLAGS = {
  nodes: { type: "string" },
  "base-port": { type: "string" },
  nginx: { type: "string" },
  "no-nginx": { type: "boolean" },
} as const;

/** Flags of `start` that `cluster` sets for each node itself. */
const SET_PER_NODE = new Set(["port", "engine", "node-id", "help"]);

/** A node process of the cluster. */
interface NodeChild {
  readonly id: string;
  readonly port: number;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
}

/** `switchboard cluster`: N nodes and nginx until a signal drains them. */
export async function cluster(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...startFlags(), ...OWN_FLAGS },
    strict: true,
  });
  const flags = values as Record<string, string | boolean | undefined>;
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const plan = makePlan(flags);
  const binary = plan.nginx ? nginxBinary(flags) : undefined;
  if (plan.nginx && !binary) {
    process.stderr.write(
      `switchboard: nginx is not on PATH: running the nodes only` +
        ` (ports ${plan.ports[0]}-${plan.ports.at(-1)})\n`,
    );
  }

  const busy = await busyPort(plan.host, [
    ...plan.ports,
    ...(binary ? [plan.proxyPort] : []),
  ]);
  if (busy !== undefined) {
    process.stderr.write(
      `switchboard: ${bracket(plan.host)}:${busy} is in use\n`,
    );
    return 1;
  }

  const nodes = plan.ports.map((port, i) =>
    spawnNode(plan, port, `${plan.nodeId}-${i + 1}`),
  );
  const killAll = () => {
    for (const node of nodes) node.child.kill("SIGKILL");
  };
  process.once("exit", killAll);

  const failed = await started(nodes);
  if (failed) {
    killAll();
    const why =
      failed.code === "timeout"
        ? `within ${NODE_START_TIMEOUT_MS / 1000} s`
        : `(status ${failed.code})`;
    process.stderr.write(`switchboard: ${failed.id} did not start ${why}\n`);
    return failed.code === 2 ? 2 : 1;
  }

  let nginx: RunningNginx | undefined;
  if (binary) {
    try {
      nginx = await runNginx(
        binary,
        {
          nodes: plan.ports.map((port) => `${plan.upstreamHost}:${port}`),
          path: plan.path,
          workerConnections: WORKER_CONNECTIONS,
        },
        { host: plan.host, port: plan.proxyPort },
      );
    } catch (error) {
      killAll();
      process.stderr.write(`switchboard: ${(error as Error).message}\n`);
      return 1;
    }
  }
  announce(plan, nodes, nginx);
  return runUntilSignal(nodes, nginx, killAll);
}

/** What `cluster` runs, from its flags. */
interface Plan {
  readonly ports: readonly number[];
  readonly proxyPort: number;
  readonly host: string;
  /** The address nginx reaches the nodes at. */
  readonly upstreamHost: string;
  readonly path: string;
  readonly redisUrl: string;
  readonly nodeId: string;
  readonly nginx: boolean;
  /** `start` flags passed to every node. */
  readonly passed: readonly string[];
}

/** Checks every flag before anything starts: bad input exits 2. */
function makePlan(flags: Record<string, string | boolean | undefined>): Plan {
  const count = integer(flags.nodes, "--nodes", DEFAULT_CLUSTER_NODES);
  if (count < 1 || count > MAX_NODES) {
    throw new UsageError(`--nodes must be 1 to ${MAX_NODES}, got ${count}`);
  }
  const base = integer(flags["base-port"], "--base-port", DEFAULT_BASE_PORT);
  const proxyPort = integer(flags.port, "--port", DEFAULT_PROXY_PORT);
  const ports = Array.from({ length: count }, (_, i) => base + i);
  if (base < 1 || ports.at(-1)! > 65_535) {
    throw new UsageError(
      `--base-port must leave room for ${count} ports below 65536,` +
        ` got ${base}`,
    );
  }
  if (proxyPort < 1 || proxyPort > 65_535) {
    throw new UsageError(`--port must be 1 to 65535, got ${proxyPort}`);
  }
  const withNginx = flags["no-nginx"] !== true;
  if (withNginx && ports.includes(proxyPort)) {
    throw new UsageError(
      `--port ${proxyPort} is one of the nodes' ports` +
        ` (${ports[0]}-${ports.at(-1)}); move --port or --base-port`,
    );
  }
  if (typeof flags.engine === "string" && flags.engine !== "redis") {
    throw new UsageError(
      `cluster runs the redis engine, got --engine ${flags.engine}`,
    );
  }

  // The nodes' own checks, once here rather than N times after a spawn.
  const passedFlags = { ...flags };
  for (const name of [...Object.keys(OWN_FLAGS), ...SET_PER_NODE]) {
    delete passedFlags[name];
  }
  const settings = loadSettings(
    { ...passedFlags, engine: "redis", port: String(base) },
    process.env,
  );
  const options = resolveOptions(settings.node);
  if (options.open && !options.insecure && !isLoopback(options.host)) {
    throw new UsageError(
      `open mode on ${options.host} is refused: set a token secret, or` +
        " insecure (--insecure) to allow it",
    );
  }
  const host = options.host;
  const upstreamHost =
    host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : bracket(host);
  if (withNginx && flags["trust-proxy"] === undefined) {
    if (!process.env.SWITCHBOARD_TRUST_PROXY) {
      passedFlags["trust-proxy"] = upstreamHost.replace(/^\[|\]$/g, "");
    }
  }
  return {
    ports,
    proxyPort,
    host,
    upstreamHost,
    path: options.path,
    redisUrl: options.redisUrl,
    nodeId: typeof flags["node-id"] === "string" ? flags["node-id"] : "node",
    nginx: withNginx,
    passed: Object.entries(passedFlags).flatMap(([name, value]) =>
      value === undefined || value === false
        ? []
        : value === true
          ? [`--${name}`]
          : [`--${name}`, value],
    ),
  };
}

/** nginx from `--nginx` (which must exist), else from PATH, else none. */
function nginxBinary(
  flags: Record<string, string | boolean | undefined>,
): string | undefined {
  const named = flags.nginx;
  if (typeof named !== "string") return findExecutable("nginx");
  const found = named.includes("/")
    ? isExecutable(named)
      ? named
      : undefined
    : findExecutable(named);
  if (!found) {
    throw new UsageError(`--nginx ${named} is not an executable file`);
  }
  return found;
}

/** Spawns one node in a process group of its own. */
function spawnNode(plan: Plan, port: number, id: string): NodeChild {
  // Detached: a Ctrl-C in the terminal reaches the cluster alone, which
  // signals each node once. Logs go to this process's stderr.
  const child = spawn(
    process.execPath,
    [
      BIN,
      "start",
      ...plan.passed,
      "--engine",
      "redis",
      "--port",
      String(port),
      "--node-id",
      id,
    ],
    { detached: true, stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(1));
    child.once("exit", (code) => resolve(code));
  });
  return { id, port, child, exited };
}

/**
 * Waits until every node printed that it listens; returns the first that
 * exited instead, with its status.
 */
async function started(
  nodes: readonly NodeChild[],
): Promise<{ id: string; code: number | null | "timeout" } | undefined> {
  const outcomes = await Promise.all(
    nodes.map(
      (node) =>
        new Promise<number | null | "listening" | "timeout">((resolve) => {
          let output = "";
          node.child.stdout!.on("data", (chunk: Buffer) => {
            output += chunk.toString();
            if (output.includes("listening on")) resolve("listening");
          });
          void node.exited.then(resolve);
          setTimeout(() => resolve("timeout"), NODE_START_TIMEOUT_MS).unref();
        }),
    ),
  );
  for (const [i, outcome] of outcomes.entries()) {
    if (outcome !== "listening") return { id: nodes[i]!.id, code: outcome };
  }
  return undefined;
}

/** Prints where the cluster listens. */
function announce(
  plan: Plan,
  nodes: readonly NodeChild[],
  nginx: RunningNginx | undefined,
): void {
  const origin = (port: number) => `${bracket(plan.host)}:${port}`;
  const lines = nodes.map(
    (node) =>
      `${node.id} listening on ws://${origin(node.port)}${plan.path}` +
      ` (HTTP API on http://${origin(node.port)}/api, pid ${node.child.pid})`,
  );
  lines.push(
    nginx
      ? `Switchboard cluster listening on ws://${origin(plan.proxyPort)}` +
          `${plan.path}: nginx (pid ${nginx.pid}, config` +
          ` ${nginx.prefix}/nginx.conf) in front of ${nodes.length} nodes`
      : `Switchboard cluster: ${nodes.length} nodes, no nginx in front`,
  );
  lines.push(`The nodes share ${redacted(plan.redisUrl)}.`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

/**
 * Runs until SIGTERM or SIGINT: then each node drains, nginx stops once
 * they are gone, and the status is 0 if every node drained cleanly. A
 * second signal stops everything at once with status 1.
 */
function runUntilSignal(
  nodes: readonly NodeChild[],
  nginx: RunningNginx | undefined,
  killAll: () => void,
): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const alive = new Set(nodes);
    for (const node of nodes) {
      void node.exited.then((code) => {
        alive.delete(node);
        if (stopping) return;
        process.stderr.write(
          `switchboard: ${node.id} exited (status ${code})\n`,
        );
        if (alive.size === 0) {
          void nginx?.stop("SIGTERM").then(() => resolve(1));
          if (!nginx) resolve(1);
        }
      });
    }
    void nginx?.exited.then((code) => {
      if (stopping) return;
      process.stderr.write(
        `switchboard: nginx exited (status ${code}); the nodes run on\n`,
      );
    });

    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write("switchboard: second signal: stopping now\n");
        for (const node of alive) node.child.kill("SIGTERM");
        void nginx?.stop("SIGTERM");
        setTimeout(killAll, 1_000).unref();
        resolve(1);
        return;
      }
      stopping = true;
      process.stderr.write(
        `${signal}: the nodes drain, then nginx stops` +
          " (a second signal stops at once)\n",
      );
      for (const node of alive) node.child.kill("SIGTERM");
      void Promise.all(nodes.map((node) => node.exited)).then(async (codes) => {
        await stopNginx(nginx);
        resolve(codes.every((code) => code === 0) ? 0 : 1);
      });
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

/** Stops nginx gracefully, or fast if it takes too long. */
async function stopNginx(nginx: RunningNginx | undefined): Promise<void> {
  if (!nginx) return;
  const timer = setTimeout(
    () => void nginx.stop("SIGTERM"),
    NGINX_STOP_TIMEOUT_MS,
  );
  await nginx.stop("SIGQUIT");
  clearTimeout(timer);
}

/** The first of `ports` that another process listens on, if any. */
async function busyPort(
  host: string,
  ports: readonly number[],
): Promise<number | undefined> {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen({ host, port, exclusive: true }, () =>
        server.close(() => resolve(true)),
      );
    });
    if (!free) return port;
  }
  return undefined;
}

function integer(
  value: string | boolean | undefined,
  flag: string,
  fallback: number,
): number {
  if (typeof value !== "string") return fallback;
  return parseValue("integer", value, flag) as number;
}

function isLoopback(host: string): boolean {
  return (
    host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host)
  );
}

/** A Redis URL without its password, for printing. */
function redacted(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url;
  }
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
