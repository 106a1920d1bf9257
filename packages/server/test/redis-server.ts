import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

import { createClient } from "redis";

/** A redis-server of a test's own, on a free loopback port. */
export interface OwnRedis {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `redis-server` from PATH with nothing kept on disk; resolves once
 * it accepts connections.
 */
export async function startRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--maxmemory-policy",
      "noeviction",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    let output = "";
    child.once("error", reject);
    child.once("exit", (code) =>
      reject(new Error(`redis-server exited with ${code}: ${output}`)),
    );
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ready to accept connections")) resolve();
    });
  });
  child.stdout!.resume();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** A plain Redis connection for a test's own commands. */
export class TestRedis {
  private constructor(
    private readonly client: ReturnType<typeof createClient>,
  ) {}

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
