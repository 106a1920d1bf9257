/**
 * Runs nginx as a child process with a generated config in a temp prefix,
 * for `switchboard cluster` and the tests. Only the nginx started here is
 * ever signalled, by its pid.
 */
import { spawn } from "node:child_process";
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

import { renderNginxConfig, type NginxConfigOptions } from "./nginx-config.js";

/** How long nginx may take to accept connections: 5 s. */
const START_TIMEOUT_MS = 5_000;

/** Pause between checks that nginx accepts connections. */
const POLL_MS = 20;

/** An nginx started by `runNginx`. */
export interface RunningNginx {
  /** The master process id. */
  readonly pid: number;
  /** The temp directory with the config, pid file, logs and temp paths. */
  readonly prefix: string;
  /** The config nginx runs with. */
  readonly config: string;
  /** Resolves with the exit status (null after a signal). */
  readonly exited: Promise<number | null>;
  /** A file of the prefix (`access.log`, `error.log`), "" if none. */
  read(name: string): string;
  /**
   * Signals the master (SIGQUIT: graceful; SIGTERM: fast), waits for it to
   * exit and removes the prefix.
   */
  stop(signal?: "SIGQUIT" | "SIGTERM"): Promise<void>;
}

/** Where nginx should listen, to know when it does. */
export interface NginxAddress {
  readonly host: string;
  readonly port: number;
}

/** The executable `name` on PATH, or undefined. */
export function findExecutable(name: string): string | undefined {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, name))
    .find(isExecutable);
}

/** Whether `path` is a file this process may execute. */
export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Starts `binary` in the foreground (`-g "daemon off;"`) with the config
 * for `options` and its paths in a new temp prefix; resolves once it
 * accepts connections on `address`, rejects with nginx's own complaint
 * when it exits or does not listen within 5 s. `edit` may change the
 * rendered config first (tests break it on purpose).
 */
export async function runNginx(
  binary: string,
  options: Omit<NginxConfigOptions, "listen" | "prefix" | "pid">,
  address: NginxAddress,
  edit: (config: string) => string = (config) => config,
): Promise<RunningNginx> {
  const prefix = mkdtempSync(join(tmpdir(), "switchboard-nginx-"));
  // Run as root, nginx's workers switch to an unprivileged user, which
  // must still reach the temp paths inside the prefix.
  chmodSync(prefix, 0o755);
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  const config = edit(
    renderNginxConfig({
      ...options,
      listen: `${host}:${address.port}`,
      prefix,
    }),
  );
  const file = join(prefix, "nginx.conf");
  writeFileSync(file, config);

  // stderr carries what nginx says before it reads the config's error_log.
  const child = spawn(
    binary,
    ["-p", prefix, "-c", file, "-e", "stderr", "-g", "daemon off;"],
    { stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(child.exitCode ?? 1));
    child.once("exit", (code) => resolve(code));
  });
  const clean = () => rmSync(prefix, { recursive: true, force: true });

  // nginx writes its pid file once its sockets are bound: a connection
  // alone could reach another process on the port while nginx retries.
  const pidFile = join(prefix, "nginx.pid");
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(pidFile) || !(await accepts(address))) {
    const gone = child.exitCode !== null || child.pid === undefined;
    if (gone || Date.now() > deadline) {
      if (!gone) child.kill("SIGKILL");
      await exited;
      clean();
      throw new Error(`nginx did not start: ${complaint(stderr)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }

  return {
    pid: child.pid!,
    prefix,
    config,
    exited,
    read: (name) => {
      try {
        return readFileSync(join(prefix, name), "utf8");
      } catch {
        return "";
      }
    },
    stop: async (signal = "SIGQUIT") => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
      }
      await exited;
      clean();
    },
  };
}

/** nginx's first emergency line, or its whole output. */
function complaint(stderr: string): string {
  const line = stderr
    .split("\n")
    .find((text) => /\[emerg\]/.test(text))
    ?.replace(/^.*\[emerg\] \d+#\d+: /, "");
  return line ?? (stderr.trim() || "no output");
}

function accepts({ host, port }: NginxAddress): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
