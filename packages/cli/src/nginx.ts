import { parseArgs } from "node:util";

import { UsageError } from "./errors.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS as CONNECT_MS,
  DEFAULT_FAIL_TIMEOUT_MS as FAIL_MS,
  DEFAULT_LISTEN,
  DEFAULT_PATH,
  DEFAULT_PROXY_TIMEOUT_MS as PROXY_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS as SHUTDOWN_MS,
  DEFAULT_WORKER_CONNECTIONS,
  parseBalance,
  parseConfigPath,
  parseListen,
  parseNodeAddress,
  renderNginxConfig,
  type NginxConfigOptions,
} from "./nginx-config.js";
import { parseValue } from "./values.js";

/** A default duration in the help: `75s`. */
const s = (ms: number) => `${ms / 1000}s`;

const HELP = `Usage: switchboard nginx --node HOST:PORT [--node ...] [options]

Prints an nginx.conf that puts nginx in front of Switchboard nodes: the
WebSocket path with the upgrade headers, idle timeouts well above the
nodes' heartbeat, the HTTP API and health routes on the same nodes, a
retry on another node when one refuses or answers 503 (draining, not
ready), forwarded-for headers, and an access log without query strings.

  switchboard nginx --nodes 10.0.0.1:8080,10.0.0.2:8080 > nginx.conf
  nginx -t -c "$PWD/nginx.conf" && nginx -c "$PWD/nginx.conf"

Through the proxy no request counts as local: the HTTP API, /readyz and
/metrics need the nodes' --api-key. Start the nodes with --trust-proxy set
to nginx's address so per-address limits see the client's own address.

Options:
  --node <host:port>        a node; repeat for each (a bare port means
                            127.0.0.1:PORT)
  --nodes <a,b,c>           nodes, comma-separated
  --listen <[addr:]port>    where nginx listens (default ${DEFAULT_LISTEN})
  --path <path>             the nodes' WebSocket path (default ${DEFAULT_PATH})
  --balance <method>        least_conn, ip_hash or hash:<nginx variable>
                            (default least_conn; clients resume on any
                            node, so stickiness is not needed; ip_hash
                            keys on the first three octets of IPv4)
  --proxy-timeout <time>    read and send timeout of a proxied socket
                            (default ${s(PROXY_MS)}; keep it above the nodes'
                            heartbeat, 25s by default)
  --connect-timeout <time>  time to reach a node (default ${s(CONNECT_MS)})
  --fail-timeout <time>     a node that failed is left out this long
                            (default ${s(FAIL_MS)})
  --shutdown-timeout <time> on a reload or stop, old workers close their
                            WebSockets after this (default ${s(SHUTDOWN_MS)})
  --worker-connections <n>  connections per worker, two per WebSocket
                            (default ${DEFAULT_WORKER_CONNECTIONS})
  --prefix <dir>            put the pid file, logs and temp paths in DIR
                            (an existing directory), to run nginx as
                            nginx -p DIR -c FILE -g "daemon off;"
  --pid <file>              the pid file (default DIR/nginx.pid with
                            --prefix, else nginx's own)
  -h, --help                this help

Times take ms or a unit (75s, 2m). Without --prefix, logs go to
/var/log/nginx and temp paths are nginx's own. The file has no daemon
directive: nginx daemonizes unless given -g "daemon off;".
`;

/** `switchboard nginx`: prints an nginx config for a list of nodes. */
export async function nginx(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      node: { type: "string", multiple: true },
      nodes: { type: "string" },
      listen: { type: "string" },
      path: { type: "string" },
      balance: { type: "string" },
      "proxy-timeout": { type: "string" },
      "connect-timeout": { type: "string" },
      "fail-timeout": { type: "string" },
      "shutdown-timeout": { type: "string" },
      "worker-connections": { type: "string" },
      prefix: { type: "string" },
      pid: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument "${positionals[0]}"; give nodes with --node`,
    );
  }
  const nodes = [
    ...(values.node ?? []),
    ...(values.nodes ?? "").split(",").map((node) => node.trim()),
  ]
    .filter(Boolean)
    .map(parseNodeAddress);
  if (nodes.length === 0) {
    throw new UsageError(
      "give the nodes: --node HOST:PORT (repeatable) or --nodes a,b,c",
    );
  }

  const options: NginxConfigOptions = {
    nodes,
    listen: values.listen && parseListen(values.listen),
    path: values.path && parseConfigPath(values.path, "--path"),
    balance: values.balance ? parseBalance(values.balance) : undefined,
    proxyTimeout: time(values["proxy-timeout"], "--proxy-timeout"),
    connectTimeout: time(values["connect-timeout"], "--connect-timeout"),
    failTimeout: time(values["fail-timeout"], "--fail-timeout"),
    shutdownTimeout: time(values["shutdown-timeout"], "--shutdown-timeout"),
    workerConnections: workerConnections(values["worker-connections"]),
    prefix: values.prefix && parseConfigPath(values.prefix, "--prefix"),
    pid: values.pid && parseConfigPath(values.pid, "--pid"),
  };
  process.stdout.write(renderNginxConfig(options));
  return 0;
}

/** A positive duration in ms, or undefined for the default. */
function time(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseValue("duration", text, flag) as number;
  if (ms < 1) throw new UsageError(`${flag} must be above 0, got "${text}"`);
  return ms;
}

function workerConnections(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const count = parseValue("integer", text, "--worker-connections") as number;
  if (count < 16 || count > 1_048_576) {
    throw new UsageError(
      `--worker-connections must be 16 to 1048576, got "${text}"`,
    );
  }
  return count;
}
