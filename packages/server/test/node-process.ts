import { spawn } from "node:child_process";
import { createServer } from "node:net";

const CLI = new URL("../../cli/bin/switchboard.js", import.meta.url).pathname;

/** A node in a process of its own, which a test can kill like a crash. */
export interface NodeProcess {
  readonly port: number;
  /** SIGKILL: no drain, no goodbye to Redis. */
  kill(): void;
}

const running = new Set<() => void>();

/** Kills every node process a test left running (for `afterAll`). */
export function killNodes(): void {
  for (const kill of running) kill();
  running.clear();
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
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
 * and resolves once it listens.
 */
export async function spawnNode(
  redisUrl: string,
  options: Record<string, number | string> = {},
): Promise<NodeProcess> {
  const port = await freePort();
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
      ...flags(options),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    let output = "";
    child.once("exit", (code) => reject(new Error(`node exited: ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("listening on")) resolve();
    });
  });
  const kill = () => {
    running.delete(kill);
    child.kill("SIGKILL");
  };
  running.add(kill);
  return { port, kill };
}
