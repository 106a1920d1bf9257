import { createHash } from "node:crypto";

import { describe, expect, it } from "vitest";

import { scriptSource } from "./redis-script.js";
import { sha1 } from "./sha1.js";

describe("sha1", () => {
  it("digests as SHA-1 does, across block boundaries", () => {
    for (const length of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
      const bytes = Array.from({ length }, (_, i) => (i * 37 + 11) & 0xff);
      expect(sha1(bytes)).toEqual([
        ...createHash("sha1").update(Buffer.from(bytes)).digest(),
      ]);
    }
  });

  it("names a script as EVALSHA does", () => {
    expect(scriptSource("return 1").sha).toBe(
      "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
    );
  });
});
