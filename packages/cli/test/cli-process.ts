/**
 * Runs the built `switchboard` command in child processes for tests and
 * ends every one a test left running.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { freePort } from "../../server/test/ports.js";

export { freePort };

const BIN = new URL("../bin/switchboard.js", import.meta.url).pathname;

/** How a finished command ended. */
export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const running = new Set<ChildProcess>();

/** Sends `signal` to every command still running. */
export function signalAll(signal: NodeJS.Signals): void {
  for (const child of running) child.kill(signal);
}

/** Kills every command still running (for `afterEach`). */
export function killAll(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/** Starts `switchboard ...args`; `output` and `errors` read it so far. */
export function launch(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const done = new Promise<Run>((resolve) =>
    child.on("exit", (code) => {
      running.delete(child);
      resolve({ code, stdout, stderr });
    }),
  );
  return { child, done, output: () => stdout, errors: () => stderr };
}

/** Runs `switchboard ...args` to its end. */
export function run(args: string[], env: Record<string, string> = {}) {
  return launch(args, env).done;
}

/** Waits until `check` passes, at most 10 s. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts a node and resolves once it printed where it listens. */
export async function startNode(
  args: string[],
  env: Record<string, string> = {},
) {
  const node = launch(["start", "--log-level", "error", ...args], env);
  await until(() => node.output().includes("listening on"), "listening");
  return node;
}
