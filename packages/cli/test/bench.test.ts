import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterEach, describe, expect, it } from "vitest";

import { killAll, run } from "./cli-process.js";

afterEach(killAll);

const SYSTEMS = ["switchboard", "socket.io", "ws", "ws-coalesced"];

/** A file where --out wants a folder. */
const A_FILE = join(mkdtempSync(join(tmpdir(), "sb-bench-")), "file");
writeFileSync(A_FILE, "");

describe("switchboard bench", () => {
  it("prints usage for --help and exits 0", async () => {
    const { code, stdout } = await run(["bench", "--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: switchboard bench/);
    expect(stdout).toContain("recovery-storm");
  });

  it("exits 2 with one line for an unknown scenario", async () => {
    const { code, stderr } = await run(["bench", "--scenario", "nope"]);
    expect(code).toBe(2);
    expect(stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(stderr).toContain('unknown scenario "nope"');
  });

  for (const args of [
    ["--repeats", "1.5"],
    ["--repeats", "-1"],
    ["--size", "25000"],
    ["--out", A_FILE],
  ]) {
    it(`exits 2 at once for ${args.join(" ")}`, async () => {
      const { code, stderr } = await run(["bench", ...args]);
      expect(code).toBe(2);
      expect(stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(stderr).toMatch(/^switchboard bench: /);
    });
  }

  it("says which asked-for system a scenario does not run", async () => {
    const { code, stderr } = await run([
      "bench",
      "--system",
      "ws",
      "--scenario",
      "recovery-storm",
      "--no-report",
    ]);
    expect(code).toBe(0);
    expect(stderr).toContain("recovery-storm: ws does not run this scenario");
  });

  it("measures fanout-single on every system with no loss", async () => {
    const out = mkdtempSync(join(tmpdir(), "sb-bench-"));
    const { code, stdout, stderr } = await run([
      "bench",
      "--quick",
      "--scenario",
      "fanout-single",
      "--json",
      "--size",
      "100",
      "--seconds",
      "0.3",
      "--out",
      out,
    ]);
    expect(code, stderr).toBe(0);

    const { scenarios } = JSON.parse(stdout);
    expect(scenarios).toHaveLength(1);
    const [scenario] = scenarios;
    expect(Object.keys(scenario)).toEqual([
      "name",
      "metric",
      "better",
      "results",
      "ratios",
    ]);
    expect(scenario.better).toBe("higher");
    expect(scenario.name).toBe("fanout-single");
    expect(scenario.metric).toMatch(/per server CPU-second/);
    expect(scenario.results.map((r: any) => r.system)).toEqual(SYSTEMS);
    for (const result of scenario.results) {
      expect(Object.keys(result)).toEqual([
        "system",
        "median",
        "min",
        "max",
        "loss",
      ]);
      expect(result.loss).toBe(0);
      expect(result.median).toBeGreaterThan(0);
      expect(result.min).toBeLessThanOrEqual(result.median);
      expect(result.max).toBeGreaterThanOrEqual(result.median);
    }
    const own = scenario.results[0].median;
    for (const [peer, ratio] of Object.entries(scenario.ratios)) {
      const theirs = scenario.results.find((r: any) => r.system === peer);
      expect(ratio).toBeCloseTo(own / theirs.median, 6);
    }
    expect(Object.keys(scenario.ratios)).toEqual(SYSTEMS.slice(1));

    const saved = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(saved.details[0].losses).toEqual(
      Object.fromEntries(SYSTEMS.map((s) => [s, [0]])),
    );
    expect(readFileSync(join(out, "table.md"), "utf8")).toContain(
      "| fanout-single | switchboard |",
    );
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain(
      "<code>switchboard bench --quick --scenario fanout-single",
    );
  }, 120_000);
});
