import { spawn, type ChildProcess } from "node:child_process";

import { createClient } from "redis";
import { freePort } from "./ports.js";

/** A redis-server of a test's own, on a free loopback port. */
export interface OwnRedis {
  readonly url: string;
  readonly port: number;
  /**
   * Stops the server and starts a new one on the same port: empty, or
   * with the data of a SAVE when started with a `dir`.
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Spawns redis-server; resolves once it accepts connections. */
export async function spawnRedis(
  port: number,
  dir: string | undefined,
  extra: readonly string[],
  spawned?: (child: ChildProcess) => void,
): Promise<ChildProcess> {
  const persistence = dir ? ["--dir", dir] : ["--save", ""];
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      ...persistence,
      "--appendonly",
      "no",
      "--maxmemory-policy",
      "noeviction",
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  spawned?.(child);
  await new Promise<void>((resolve, reject) => {
    let output = "";
    child.once("error", reject);
    child.once("exit", (code) =>
      reject(
        output.includes("Address already in use")
          ? new PortTakenError(output)
          : new Error(`redis-server exited with ${code}: ${output}`),
      ),
    );
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ready to accept connections")) resolve();
    });
  });
  child.stdout!.resume();
  return child;
}

/** Stops a redis-server spawned by `spawnRedis`. */
export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return resolve();
    }
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

/**
 * A port found free was taken before redis-server could bind it: test
 * clients' own connections draw from the same range of ports.
 */
export class PortTakenError extends Error {
  override readonly name = "PortTakenError";
}

/** Tries of a start whose free port was taken meanwhile. */
export const PORT_TRIES = 5;

/**
 * Spawns a redis-server on a free port, trying again on another when the
 * port is taken before the server binds it.
 */
export async function spawnOnFreePort(
  dir: string | undefined,
  extra: readonly string[],
  spawned?: (child: ChildProcess) => void,
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { port, child: await spawnRedis(port, dir, extra, spawned) };
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= PORT_TRIES) {
        throw error;
      }
    }
  }
}

/** Something a test starts and must stop. */
interface Stoppable {
  stop(): Promise<void>;
}

/**
 * Starts several servers at once. When one start fails, the ones that
 * succeeded are stopped before the failure is thrown: a test file whose
 * setup failed leaves no server running.
 */
export async function startTogether<T extends Promise<Stoppable>[]>(
  starts: [...T],
): Promise<{ [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find(
    (s): s is PromiseRejectedResult => s.status === "rejected",
  );
  if (failed) {
    await Promise.allSettled(
      settled.map((s) => (s.status === "fulfilled" ? s.value.stop() : null)),
    );
    throw failed.reason;
  }
  return settled.map((s) => (s as PromiseFulfilledResult<Stoppable>).value) as {
    [K in keyof T]: Awaited<T[K]>;
  };
}

/**
 * Starts `redis-server` from PATH on a free port; nothing is kept on disk
 * unless `dir` is given (then a SAVE survives a restart). `extra` settings
 * come last, so they win.
 */
export async function startRedis(
  dir?: string,
  extra: readonly string[] = [],
): Promise<OwnRedis> {
  const started = await spawnOnFreePort(dir, extra);
  const { port } = started;
  let child = started.child;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    restart: async () => {
      await stopChild(child);
      child = await spawnRedis(port, dir, extra);
    },
    stop: () => stopChild(child),
  };
}

/** What a test needs of a Redis connection. */
interface CommandClient {
  sendCommand(args: string[]): Promise<unknown>;
  close(): Promise<void>;
}

/** A plain Redis connection for a test's own commands. */
export class TestRedis {
  private constructor(private readonly client: CommandClient) {}

  static async connect(url: string): Promise<TestRedis> {
    const client = createClient({ url });
    client.on("error", () => undefined);
    await client.connect();
    return new TestRedis(client);
  }

  /** Sends one command and returns its reply. */
  command(args: string[]): Promise<unknown> {
    return this.client.sendCommand(args);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
