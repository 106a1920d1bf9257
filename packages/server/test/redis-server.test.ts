/**
 * The tests' own redis-servers: a port taken between finding it free and
 * binding it is told apart from other failures, so starts try again.
 */
import { connect, createServer } from "node:net";

import { describe, expect, it } from "vitest";

import { freePort } from "./ports.js";
import {
  PortTakenError,
  spawnRedis,
  startRedis,
  startTogether,
  stopChild,
} from "./redis-server.js";

describe("spawnRedis", () => {
  it("rejects with PortTakenError on a port already bound", async () => {
    const port = await freePort();
    const holder = createServer();
    await new Promise<void>((resolve) =>
      holder.listen(port, "127.0.0.1", resolve),
    );
    try {
      const started = spawnRedis(port, undefined, []);
      await expect(started).rejects.toBeInstanceOf(PortTakenError);
    } finally {
      holder.close();
    }
    const child = await spawnRedis(await freePort(), undefined, []);
    expect(child.exitCode).toBeNull();
    await stopChild(child);
  });
});

describe("startTogether", () => {
  it("stops the servers that started when another start fails", async () => {
    const started = startRedis();
    const failing = Promise.reject(new Error("no such server"));
    await expect(startTogether([started, failing])).rejects.toThrow(
      "no such server",
    );
    const { port } = await started;
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve("connected");
      });
      socket.once("error", (error: NodeJS.ErrnoException) =>
        resolve(error.code ?? ""),
      );
    });
    expect(refused).toBe("ECONNREFUSED");
  });
});
