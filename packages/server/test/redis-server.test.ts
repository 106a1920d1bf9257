/**
 * The tests' own redis-servers: a port taken between finding it free and
 * binding it is told apart from other failures, so starts try again.
 */
import { createServer } from "node:net";

import { describe, expect, it } from "vitest";

import { freePort } from "./ports.js";
import { PortTakenError, spawnRedis, stopChild } from "./redis-server.js";

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
