import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import {
  parseBalance,
  parseConfigPath,
  parseListen,
  parseNodeAddress,
  renderNginxConfig,
} from "../src/nginx-config.js";
import { NGINX, NGINX_REQUIRED, NO_NGINX } from "./nginx-process.js";

const BIN = new URL("../bin/switchboard.js", import.meta.url).pathname;

const NODES = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"];

/** The body of the block that opens with `opening`, braces balanced. */
function block(config: string, opening: string): string {
  const start = config.indexOf(`${opening} {`);
  if (start === -1) throw new Error(`no block ${opening}`);
  let depth = 0;
  for (let i = config.indexOf("{", start); i < config.length; i++) {
    if (config[i] === "{") depth += 1;
    if (config[i] === "}" && --depth === 0) {
      return config.slice(start, i + 1);
    }
  }
  throw new Error(`unbalanced block ${opening}`);
}

/** The directives of a block, one per line, without comments. */
function directives(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

function run(args: string[]): Promise<{
  code: number | null;
  stdout: string;
  stderr: string;
}> {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve) =>
    child.on("exit", (code) => resolve({ code, stdout, stderr })),
  );
}

describe("renderNginxConfig", () => {
  const config = renderNginxConfig({ nodes: NODES });
  const ws = directives(block(config, "location = /ws"));
  const api = directives(
    block(config, "location ~ ^/(api/|healthz$|readyz$|metrics$)"),
  );

  it("lists every node in a least_conn upstream by default", () => {
    const upstream = directives(block(config, "upstream switchboard"));
    expect(upstream).toContain("least_conn;");
    for (const node of NODES) {
      expect(upstream).toContain(
        `server ${node} max_fails=1 fail_timeout=10s;`,
      );
    }
    expect(config).toContain("listen 8080;");
  });

  it.each([
    ["ip_hash", "ip_hash;"],
    ["hash:$remote_addr", "hash $remote_addr consistent;"],
    ["hash:cookie_sb", "hash $cookie_sb consistent;"],
  ])("balances with --balance %s", (text, directive) => {
    const balanced = renderNginxConfig({
      nodes: NODES,
      balance: parseBalance(text),
    });
    const upstream = directives(block(balanced, "upstream switchboard"));
    expect(upstream).toContain(directive);
    expect(upstream).not.toContain("least_conn;");
    // A balancing method must come before keepalive.
    expect(upstream.indexOf(directive)).toBeLessThan(
      upstream.indexOf("keepalive 32;"),
    );
  });

  it("forwards the WebSocket upgrade on the WebSocket path", () => {
    expect(ws).toEqual(
      expect.arrayContaining([
        "proxy_pass http://switchboard;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
      ]),
    );
    expect(
      directives(block(config, "map $http_upgrade $connection_upgrade")),
    ).toEqual([
      "map $http_upgrade $connection_upgrade {",
      "default upgrade;",
      "''      close;",
      "}",
    ]);
  });

  it("outlasts the 25 s heartbeat with 75 s read and send timeouts", () => {
    for (const location of [ws, api]) {
      expect(location).toContain("proxy_read_timeout 75s;");
      expect(location).toContain("proxy_send_timeout 75s;");
    }
  });

  it("scales the timeouts down for tests", () => {
    const scaled = renderNginxConfig({
      nodes: NODES,
      proxyTimeout: 3_000,
      connectTimeout: 250,
      failTimeout: 1_500,
    });
    expect(scaled).toContain("proxy_read_timeout 3s;");
    expect(scaled).toContain("proxy_send_timeout 3s;");
    expect(scaled).toContain("proxy_connect_timeout 250ms;");
    expect(scaled).toContain("fail_timeout=1500ms;");
  });

  it("tries another node on a refusal, a timeout or a 503", () => {
    for (const location of [ws, api]) {
      expect(location).toContain("proxy_next_upstream error timeout http_503;");
    }
  });

  it("sets the worker file limit and shutdown timeout", () => {
    expect(config).toMatch(/^worker_rlimit_nofile 32768;$/m);
    expect(config).toMatch(/^worker_shutdown_timeout 30s;$/m);
    expect(config).toMatch(/^ {4}worker_connections 16384;$/m);
    const small = renderNginxConfig({ nodes: NODES, workerConnections: 1024 });
    expect(small).toMatch(/^worker_rlimit_nofile 2048;$/m);
  });

  it("forwards the client address and not the Host", () => {
    for (const location of [ws, api]) {
      expect(location).toContain(
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
      );
      expect(location).toContain("proxy_set_header X-Real-IP $remote_addr;");
      // A forwarded Host could make a proxied request look local.
      expect(
        location.some((line) => /^proxy_set_header Host /.test(line)),
      ).toBe(false);
    }
  });

  it("logs no query strings", () => {
    const format = config.slice(
      config.indexOf("log_format switchboard"),
      config.indexOf(";", config.indexOf("log_format switchboard")),
    );
    expect(format).toContain("$uri");
    for (const variable of [
      "$request ",
      "$request_uri",
      "$args",
      "$query_string",
      "$is_args",
      "$arg_",
      "$http_referer",
    ]) {
      expect(format).not.toContain(variable);
    }
    expect(config).toContain(
      "access_log /var/log/nginx/access.log switchboard;",
    );
    expect(config.match(/access_log /g)).toHaveLength(1);
  });

  it("proxies the HTTP API and health routes to the same upstream", () => {
    const pattern = /^\/(api\/|healthz$|readyz$|metrics$)/;
    for (const path of [
      "/api/publish",
      "/api/history",
      "/healthz",
      "/readyz",
      "/metrics",
    ]) {
      expect(pattern.test(path)).toBe(true);
    }
    for (const path of ["/healthzz", "/apis", "/", "/metrics/x"]) {
      expect(pattern.test(path)).toBe(false);
    }
    expect(api).toContain("proxy_pass http://switchboard;");
    expect(api).toContain('proxy_set_header Connection "";');
    expect(directives(block(config, "location /"))).toContain("return 404;");
  });

  it("puts pid, logs and temp paths in the prefix", () => {
    const prefixed = renderNginxConfig({ nodes: NODES, prefix: "/tmp/sb/" });
    expect(prefixed).toMatch(/^pid \/tmp\/sb\/nginx\.pid;$/m);
    expect(prefixed).toMatch(/^error_log \/tmp\/sb\/error\.log warn;$/m);
    expect(prefixed).toContain("access_log /tmp/sb/access.log switchboard;");
    for (const kind of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) {
      expect(prefixed).toContain(`${kind}_temp_path /tmp/sb/${kind}_temp;`);
    }
    const withPid = renderNginxConfig({
      nodes: NODES,
      prefix: "/tmp/sb",
      pid: "/run/sb.pid",
    });
    expect(withPid).toMatch(/^pid \/run\/sb\.pid;$/m);
    expect(config).not.toMatch(/^pid |_temp_path/m);
    expect(config).toMatch(/^error_log \/var\/log\/nginx\/error\.log warn;$/m);
  });

  it("leaves daemon to the command line", () => {
    expect(config).not.toMatch(/\bdaemon\b/);
    expect(config).not.toMatch(/^user /m);
  });

  it("matches the example in deploy/nginx.conf", () => {
    const example = readFileSync(
      new URL("../../../deploy/nginx.conf", import.meta.url),
      "utf8",
    );
    expect(example).toBe(
      renderNginxConfig({
        nodes: ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"],
        listen: "80",
      }),
    );
  });

  it("listens and serves the path it is given", () => {
    const custom = renderNginxConfig({
      nodes: NODES,
      listen: "127.0.0.1:9000",
      path: "/realtime",
    });
    expect(custom).toContain("listen 127.0.0.1:9000;");
    expect(custom).toContain("location = /realtime {");
  });
});

describe("nginx option parsing", () => {
  it.each([
    ["127.0.0.1:8081", "127.0.0.1:8081"],
    ["8081", "127.0.0.1:8081"],
    ["node-1.internal:80", "node-1.internal:80"],
    ["[::1]:8081", "[::1]:8081"],
  ])("takes the node %s", (text, address) => {
    expect(parseNodeAddress(text)).toBe(address);
  });

  it.each(["host", "h:0", "h:70000", "a b:1", "h:1;", "h:1 down", ""])(
    "refuses the node %j",
    (text) => {
      expect(() => parseNodeAddress(text)).toThrow(/--node must be HOST:PORT/);
    },
  );

  it.each(["8080", "127.0.0.1:8080", "[::]:443"])("takes --listen %s", (text) =>
    expect(parseListen(text)).toBe(text),
  );

  it.each(["0", "99999", "8080 ssl", "x"])("refuses --listen %j", (text) => {
    expect(() => parseListen(text)).toThrow(/--listen must be/);
  });

  it.each(["round_robin", "hash:", "hash:$a b", "hash:${x}", "random"])(
    "refuses --balance %j",
    (text) => {
      expect(() => parseBalance(text)).toThrow(/--balance must be/);
    },
  );

  it.each(["relative/dir", "/a;b", "/a b", "/a{b}", "/$x", "/a//b", ""])(
    "refuses the path %j",
    (text) => {
      expect(() => parseConfigPath(text, "--prefix")).toThrow(
        /--prefix must be an absolute path/,
      );
    },
  );
});

describe("switchboard nginx", () => {
  it("prints usage for --help and exits 0", async () => {
    const { code, stdout } = await run(["nginx", "--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: switchboard nginx/);
    for (const flag of [
      "--node",
      "--nodes",
      "--listen",
      "--path",
      "--balance",
      "--proxy-timeout",
      "--prefix",
      "--pid",
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  it("prints the config for --node and --nodes", async () => {
    const { code, stdout } = await run([
      "nginx",
      "--node",
      "127.0.0.1:8081",
      "--nodes",
      "127.0.0.1:8082,8083",
      "--listen",
      "9090",
      "--proxy-timeout",
      "90s",
    ]);
    expect(code).toBe(0);
    expect(stdout).toBe(
      renderNginxConfig({
        nodes: NODES,
        listen: "9090",
        proxyTimeout: 90_000,
      }),
    );
  });

  it.each([
    [[], "switchboard: give the nodes: --node HOST:PORT (repeatable)"],
    [["--node", "x"], "switchboard: --node must be HOST:PORT"],
    [["--nodes", "a:1", "--balance", "sticky"], "switchboard: --balance"],
    [
      ["--node", "a:1", "--proxy-timeout", "soon"],
      "switchboard: --proxy-timeout",
    ],
    [["--node", "a:1", "--proxy-timeout", "0"], "switchboard: --proxy-timeout"],
    [["--node", "a:1", "--prefix", "tmp"], "switchboard: --prefix"],
    [["--node", "a:1", "--worker-connections", "2"], "switchboard: --worker"],
    [["--node", "a:1", "extra"], 'switchboard: unexpected argument "extra"'],
    [["--nod", "a:1"], "switchboard: Unknown option '--nod'"],
  ])("refuses %j with one line and exit 2", async (args, line) => {
    const { code, stdout, stderr } = await run(["nginx", ...args]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr.startsWith(line)).toBe(true);
    expect(stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  it("renders a file nginx -t accepts", async (context) => {
    if (!NGINX) {
      if (NGINX_REQUIRED) throw new Error(`CI=true: ${NO_NGINX}`);
      context.skip(NO_NGINX);
    }
    const prefix = mkdtempSync(join(tmpdir(), "sb-nginx-t-"));
    try {
      for (const balance of ["least_conn", "ip_hash", "hash:$remote_addr"]) {
        const file = join(prefix, "nginx.conf");
        writeFileSync(
          file,
          renderNginxConfig({
            nodes: NODES,
            listen: "127.0.0.1:18080",
            balance: parseBalance(balance),
            prefix,
          }),
        );
        const check = spawnSync(
          NGINX!,
          ["-t", "-p", prefix, "-c", file, "-e", "stderr"],
          { encoding: "utf8" },
        );
        expect(check.stderr).toContain("test is successful");
        expect(check.status).toBe(0);
      }
    } finally {
      rmSync(prefix, { recursive: true, force: true });
    }
  });
});
