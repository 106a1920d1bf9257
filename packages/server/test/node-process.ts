import { spawn } from "node:child_process";
import { freePort } from "./ports.js";

const CLI = new URL("../../cli/bin/switchboard.js", import.meta.url).pathname;

/** A node in a process of its own, which a test can kill like a crash. */
export interface NodeProcess {
  readonly port: number;
  readonly pid: number;
  /** Resolves with the exit status (null after a signal) once it exits. */
  readonly exited: Promise<number | null>;
  /** SIGKILL: no drain, no goodbye to Redis. */
  kill(): void;
  /** SIGTERM: the node drains; resolves with its exit status. */
  stop(): Promise<number | null>;
}

const running = new Set<() => void>();

/** Kills every node process a test left running (for `afterAll`). */
export function killNodes(): void {
  for (const kill of running) kill();
  running.clear();
}

/** Flags of `switchboard start` from camelCase option names and ms. */
function flags(options: Record<string, number | string>): string[] {
  return Object.entries(options).flatMap(([name, value]) => [
    `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
    String(value),
  ]);
}

/**
 * Starts `switchboard start` with the redis engine (the CLI must be built)
 * and resolves once it listens. `options.port` picks the port (to restart
 * a node where it was); a free one otherwise.
 */
export async function spawnNode(
  redisUrl: string,
  options: Record<string, number | string> = {},
): Promise<NodeProcess> {
  const { port: fixedPort, ...rest } = options;
  const port = fixedPort === undefined ? await freePort() : Number(fixedPort);
  const child = spawn(
    process.execPath,
    [
      CLI,
      "start",
      "--engine",
      "redis",
      "--redis-url",
      redisUrl,
      "--port",
      String(port),
      "--log-level",
      "error",
      ...flags(rest),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      running.delete(kill);
      resolve(code);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    let output = "";
    void exited.then((code) => reject(new Error(`node exited: ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("listening on")) resolve();
    });
  });
  child.stdout!.resume();
  function kill(): void {
    running.delete(kill);
    child.kill("SIGKILL");
  }
  running.add(kill);
  return {
    port,
    pid: child.pid!,
    exited,
    kill,
    stop: () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}
