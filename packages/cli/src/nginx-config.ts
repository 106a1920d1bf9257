/**
 * The nginx configuration `switchboard nginx` prints, as a pure function of
 * its options, and the checks on those options. Nothing here touches the
 * file system or runs nginx.
 */
import { UsageError } from "./errors.js";

/** How nginx picks a node for each new connection. */
export type Balance =
  | { readonly kind: "least_conn" }
  | { readonly kind: "ip_hash" }
  | { readonly kind: "hash"; readonly variable: string };

/** Options of `renderNginxConfig`. Durations are in milliseconds. */
export interface NginxConfigOptions {
  /** The nodes, each `host:port`; at least one. */
  readonly nodes: readonly string[];
  /**
   * What nginx listens on: a port, or `address:port`.
   * @default DEFAULT_LISTEN ("8080")
   */
  readonly listen?: string;
  /**
   * The nodes' WebSocket path.
   * @default DEFAULT_PATH ("/ws")
   */
  readonly path?: string;
  /**
   * How a node is chosen. Stickiness is not needed for correctness: a
   * client that lands on another node resumes there.
   * @default least_conn
   */
  readonly balance?: Balance;
  /**
   * `proxy_read_timeout` and `proxy_send_timeout`: an idle socket is cut
   * after this, so it must be well above the nodes' `heartbeat`.
   * @default DEFAULT_PROXY_TIMEOUT_MS (75 s)
   */
  readonly proxyTimeout?: number;
  /**
   * `proxy_connect_timeout`: a node that does not accept within this is
   * skipped for the next.
   * @default DEFAULT_CONNECT_TIMEOUT_MS (5 s)
   */
  readonly connectTimeout?: number;
  /**
   * `fail_timeout` of each node: after a failed attempt nginx avoids the
   * node this long.
   * @default DEFAULT_FAIL_TIMEOUT_MS (10 s)
   */
  readonly failTimeout?: number;
  /**
   * `worker_shutdown_timeout`: on a reload or graceful stop, old workers
   * close the WebSockets they still hold after this.
   * @default DEFAULT_SHUTDOWN_TIMEOUT_MS (30 s)
   */
  readonly shutdownTimeout?: number;
  /**
   * `worker_connections`; each proxied WebSocket takes two.
   * `worker_rlimit_nofile` is set to twice this.
   * @default DEFAULT_WORKER_CONNECTIONS (16384)
   */
  readonly workerConnections?: number;
  /**
   * A directory for the pid file, the logs and the temp paths, so nginx
   * runs without touching system paths (`nginx -p DIR`). It must exist.
   * @default undefined (nginx's compiled-in paths, /var/log/nginx logs)
   */
  readonly prefix?: string;
  /**
   * The pid file.
   * @default `<prefix>/nginx.pid` with a prefix, else nginx's own
   */
  readonly pid?: string;
}

/** nginx listens on port 8080 of every address by default. */
export const DEFAULT_LISTEN = "8080";

/** The nodes' WebSocket path, as `switchboard start` serves it. */
export const DEFAULT_PATH = "/ws";

/** Idle timeout of a proxied socket: 75 s, three server heartbeats. */
export const DEFAULT_PROXY_TIMEOUT_MS = 75_000;

/** Time to open a connection to a node: 5 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Time a node that failed is left out: 10 s, nginx's own default. */
export const DEFAULT_FAIL_TIMEOUT_MS = 10_000;

/** Time old workers keep their WebSockets on a reload: 30 s. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

/** Connections per worker: 16384, 8192 proxied WebSockets. */
export const DEFAULT_WORKER_CONNECTIONS = 16_384;

/** Log lines without query strings, so nothing in a URL reaches a log. */
const LOG_FORMAT = [
  `'$remote_addr [$time_local] "$request_method $uri $server_protocol" '`,
  "'$status $body_bytes_sent $request_time $upstream_addr'",
];

/** Characters allowed in a path nginx is given: no quoting needed. */
const SAFE_PATH = /^\/[A-Za-z0-9_.@+/-]*$/;

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * Checks a node address and returns it as nginx writes it; a bare port
 * means 127.0.0.1.
 */
export function parseNodeAddress(text: string): string {
  const address = /^\d+$/.test(text) ? `127.0.0.1:${text}` : text;
  const match = HOST_PORT.exec(address);
  if (!match || !isPort(match[2]!)) {
    throw new UsageError(
      `--node must be HOST:PORT (e.g. 127.0.0.1:8081), got "${text}"`,
    );
  }
  return address;
}

/** Checks `--listen`: a port, or `address:port`. */
export function parseListen(text: string): string {
  const port = /^\d+$/.test(text) ? text : HOST_PORT.exec(text)?.[2];
  if (port === undefined || !isPort(port)) {
    throw new UsageError(
      `--listen must be PORT or ADDRESS:PORT (e.g. 8080), got "${text}"`,
    );
  }
  return text;
}

/** Parses `--balance`: `least_conn`, `ip_hash` or `hash:<variable>`. */
export function parseBalance(text: string): Balance {
  if (text === "least_conn" || text === "ip_hash") return { kind: text };
  const match = /^hash:\$?([A-Za-z_][A-Za-z0-9_]*)$/.exec(text);
  if (!match) {
    throw new UsageError(
      "--balance must be least_conn, ip_hash or hash:<nginx variable>" +
        ` (e.g. hash:$remote_addr), got "${text}"`,
    );
  }
  return { kind: "hash", variable: `$${match[1]}` };
}

/**
 * Checks a path nginx is given (`--path`, `--prefix`, `--pid`): absolute,
 * and of characters that need no quoting in nginx's syntax.
 */
export function parseConfigPath(text: string, flag: string): string {
  if (!SAFE_PATH.test(text) || text.includes("//")) {
    throw new UsageError(
      `${flag} must be an absolute path of A-Za-z0-9_.@+/-, got "${text}"`,
    );
  }
  return text;
}

/**
 * Renders a whole `nginx.conf` for a Switchboard fleet: the WebSocket path
 * with the upgrade headers and long idle timeouts, the HTTP API and health
 * routes on the same upstream, retries on another node for refused
 * connections and 503 (a draining or unready node), and an access log
 * without query strings. The file holds no `daemon` directive, so it runs
 * under `-g "daemon off;"` as well.
 */
export function renderNginxConfig(options: NginxConfigOptions): string {
  if (options.nodes.length === 0) {
    throw new UsageError("give at least one node");
  }
  const listen = options.listen ?? DEFAULT_LISTEN;
  const path = options.path ?? DEFAULT_PATH;
  const proxyTimeout = duration(
    options.proxyTimeout ?? DEFAULT_PROXY_TIMEOUT_MS,
  );
  const connectTimeout = duration(
    options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
  );
  const failTimeout = duration(options.failTimeout ?? DEFAULT_FAIL_TIMEOUT_MS);
  const shutdownTimeout = duration(
    options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
  );
  const connections = options.workerConnections ?? DEFAULT_WORKER_CONNECTIONS;
  const prefix = options.prefix?.replace(/(.)\/$/, "$1");
  const pid = options.pid ?? (prefix && `${prefix}/nginx.pid`);

  const main = [
    `# Generated by \`switchboard nginx\` for ${count(options.nodes.length)}.`,
    "# Regenerate it rather than edit it: switchboard nginx --help.",
    "worker_processes auto;",
    `worker_rlimit_nofile ${connections * 2};`,
    "# On a reload, old workers close the WebSockets they hold after this;",
    "# clients reconnect with jitter and resume.",
    `worker_shutdown_timeout ${shutdownTimeout};`,
    ...(pid ? [`pid ${pid};`] : []),
    `error_log ${prefix ?? "/var/log/nginx"}/error.log warn;`,
    "",
    "events {",
    `    worker_connections ${connections};`,
    "}",
    "",
  ];
  const http = [
    "http {",
    "    server_tokens off;",
    "    default_type application/octet-stream;",
    "    client_max_body_size 1m;",
    ...(prefix ? tempPaths(prefix) : []),
    "",
    "    # No query strings: whatever an app puts in a URL stays out of logs.",
    "    log_format switchboard",
    `        ${LOG_FORMAT[0]}`,
    `        ${LOG_FORMAT[1]};`,
    `    access_log ${prefix ?? "/var/log/nginx"}/access.log switchboard;`,
    "",
    "    map $http_upgrade $connection_upgrade {",
    "        default upgrade;",
    "        ''      close;",
    "    }",
    "",
    ...upstream(options, failTimeout),
    "",
    "    server {",
    `        listen ${listen};`,
    "",
    "        # WebSockets. The nodes ping every heartbeat (25 s), well inside",
    "        # the read and send timeouts. A node that refuses the connection",
    "        # or answers 503 (draining, not ready) is skipped for the next.",
    `        location = ${path} {`,
    ...proxy(connectTimeout, proxyTimeout),
    "            proxy_set_header Upgrade $http_upgrade;",
    "            proxy_set_header Connection $connection_upgrade;",
    "            proxy_buffering off;",
    "        }",
    "",
    "        # The HTTP API and health routes, on the same nodes. Host is not",
    "        # forwarded, so no proxied request counts as local: the API,",
    "        # /readyz and /metrics need the API key through this proxy.",
    "        location ~ ^/(api/|healthz$|readyz$|metrics$) {",
    ...proxy(connectTimeout, proxyTimeout),
    '            proxy_set_header Connection "";',
    "        }",
    "",
    "        location / {",
    "            return 404;",
    "        }",
    "    }",
    "}",
    "",
  ];
  return [...main, ...http].join("\n");
}

function upstream(options: NginxConfigOptions, failTimeout: string): string[] {
  const balance = options.balance ?? { kind: "least_conn" };
  const method =
    balance.kind === "hash"
      ? `hash ${balance.variable} consistent;`
      : `${balance.kind};`;
  return [
    "    upstream switchboard {",
    "        zone switchboard 64k;",
    `        ${method}`,
    ...options.nodes.map(
      (node) =>
        `        server ${node} max_fails=1 fail_timeout=${failTimeout};`,
    ),
    "        keepalive 32;",
    "    }",
  ];
}

/** The directives every proxied location shares. */
function proxy(connectTimeout: string, proxyTimeout: string): string[] {
  return [
    "            proxy_pass http://switchboard;",
    "            proxy_http_version 1.1;",
    "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "            proxy_set_header X-Real-IP $remote_addr;",
    "            proxy_set_header X-Forwarded-Proto $scheme;",
    "            proxy_set_header X-Forwarded-Host $host;",
    `            proxy_connect_timeout ${connectTimeout};`,
    `            proxy_read_timeout ${proxyTimeout};`,
    `            proxy_send_timeout ${proxyTimeout};`,
    "            proxy_next_upstream error timeout http_503;",
  ];
}

function tempPaths(prefix: string): string[] {
  return ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map(
    (kind) => `    ${kind}_temp_path ${prefix}/${kind}_temp;`,
  );
}

/** A duration in nginx's syntax: whole seconds as `75s`, else `ms`. */
function duration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function count(nodes: number): string {
  return nodes === 1 ? "1 node" : `${nodes} nodes`;
}

function isPort(text: string): boolean {
  const port = Number(text);
  return Number.isInteger(port) && port >= 1 && port <= 65_535;
}
