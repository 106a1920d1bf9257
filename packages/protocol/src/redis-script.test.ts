import { describe, expect, it } from "vitest";

import { evalScript } from "./redis-script.js";

describe("evalScript", () => {
  const script = {
    text: "return 1",
    sha: "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
  };

  it("sends the script whole once Redis answers NOSCRIPT", async () => {
    const sent: string[][] = [];
    const reply = await evalScript(
      (command) => {
        sent.push(command);
        return command[0] === "EVALSHA"
          ? Promise.reject(new Error("NOSCRIPT No matching script"))
          : Promise.resolve(1);
      },
      script,
      ["k"],
      ["a"],
    );
    expect(reply).toBe(1);
    expect(sent).toEqual([
      ["EVALSHA", script.sha, "1", "k", "a"],
      ["EVAL", "return 1", "1", "k", "a"],
    ]);
  });

  it("passes on any other error", async () => {
    await expect(
      evalScript(() => Promise.reject(new Error("BUSY")), script, [], []),
    ).rejects.toThrow("BUSY");
  });
});
