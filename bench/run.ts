/**
 * `switchboard bench`: measures every scenario against every system it
 * compares, each repeat in fresh processes, then prints the table (or the
 * JSON) and writes the report.
 */
import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

import { SYSTEMS, profileServers, stopAll, type SystemName } from "./fleet.js";
import { ProgressBar } from "./progress.js";
import { formatTable, writeReport } from "./report.js";
import type { RunOptions, Sample, Scenario } from "./scenario.js";
import { SCENARIOS } from "./scenarios/index.js";
import {
  summarise,
  type ScenarioDetail,
  type ScenarioSummary,
} from "./summary.js";
import { figure } from "./table.js";

/** Raised for a bad flag: one line, exit status 2. */
export class BenchUsageError extends Error {
  override readonly name = "BenchUsageError";
  readonly code = "SB_BENCH_USAGE";
}

const HELP = `Usage: switchboard bench [options]

Runs the scenarios against Switchboard, Socket.IO 4 and two raw ws servers,
each in processes of its own, and prints the median, min and max of each
figure over the repeats with Switchboard's ratio to each peer (above 1:
Switchboard is better). Figures are per second of server CPU where they
measure work. Writes an HTML report with charts, its PNG and the markdown
table to the output folder.

Scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}

Options:
  --scenario <name>   run this scenario only (repeatable)
  --repeats <n>       measurements of each system (default 3; 1 with --quick)
  --quick             smaller sizes, shorter phases, one repeat
  --seconds <s>       length of each measured phase (default 3; 1 with
                      --quick)
  --system <name>     measure this system only (repeatable): switchboard,
                      socket.io, ws, ws-coalesced; ratios need switchboard
  --size <n>          connections of every scenario, instead of its sizes
                      (at most 19000, what one server process holds)
  --json              print {"scenarios": [...]} on stdout instead of the
                      table; progress still goes to stderr
  --out <dir>         where the report goes (default bench/results/<time>)
  --no-report         write no report
  --profile <dir>     write a CPU profile (.cpuprofile) of each server
                      process into <dir>, named by pid
  --docs              also write the table and chart into docs/
                      (PERFORMANCE.md and performance.png)
  -h, --help          this help
`;

function positive(text: string | undefined, flag: string, fallback: number) {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new BenchUsageError(
      `${flag} must be a positive number, got "${text}"`,
    );
  }
  return value;
}

/**
 * One server process holds about 19k connections here: a process may
 * have 20000 open files.
 */
const MAX_SIZE = 19_000;

function whole(
  text: string | undefined,
  flag: string,
  fallback: number,
  max = Infinity,
): number {
  const value = positive(text, flag, fallback);
  if (!Number.isInteger(value) || value > max) {
    throw new BenchUsageError(
      `${flag} must be a whole number from 1` +
        (max < Infinity ? ` to ${max}` : "") +
        `, got "${text}"`,
    );
  }
  return value;
}

function parse(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string", multiple: true },
      repeats: { type: "string" },
      quick: { type: "boolean" },
      seconds: { type: "string" },
      size: { type: "string" },
      system: { type: "string", multiple: true },
      json: { type: "boolean" },
      out: { type: "string" },
      "no-report": { type: "boolean" },
      docs: { type: "boolean" },
      profile: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const quick = values.quick ?? false;
  const names = values.scenario ?? SCENARIOS.map((s) => s.name);
  const scenarios = names.map((name) => {
    const found = SCENARIOS.find((s) => s.name === name);
    if (!found) {
      throw new BenchUsageError(
        `unknown scenario "${name}"; one of ` +
          SCENARIOS.map((s) => s.name).join(", "),
      );
    }
    return found;
  });
  for (const system of values.system ?? []) {
    if (!SYSTEMS.includes(system)) {
      throw new BenchUsageError(
        `unknown system "${system}"; one of ${SYSTEMS.join(", ")}`,
      );
    }
  }
  const options: RunOptions = {
    quick,
    seconds: positive(values.seconds, "--seconds", quick ? 1 : 3),
    size:
      values.size === undefined
        ? undefined
        : whole(values.size, "--size", 0, MAX_SIZE),
  };
  return {
    help: values.help ?? false,
    scenarios,
    systems: values.system,
    options,
    repeats: whole(values.repeats, "--repeats", quick ? 1 : 3),
    json: values.json ?? false,
    out: values.out === undefined ? undefined : resolve(values.out),
    report: !(values["no-report"] ?? false),
    docs: values.docs ?? false,
    profile: values.profile,
  };
}

/**
 * Measures each system of `scenario` `repeats` times. A measurement that
 * fails (a process died, a connection was refused) is left out and
 * counted in `failures`; the run goes on.
 */
async function runScenario(
  scenario: Scenario,
  options: RunOptions,
  repeats: number,
  only: string[] | undefined,
  failures: string[],
): Promise<Map<SystemName, Sample[]>> {
  const systems = scenario.systems.filter((s) => !only || only.includes(s));
  for (const system of only ?? []) {
    if (!scenario.systems.includes(system as SystemName)) {
      process.stderr.write(
        `${scenario.name}: ${system} does not run this scenario\n`,
      );
    }
  }
  const samples = new Map<SystemName, Sample[]>(
    systems.map((system) => [system, []]),
  );
  const bar = new ProgressBar(scenario.name, repeats * systems.length);
  // Systems take turns within each repeat, so a drift in the machine's
  // load spreads over all of them.
  for (let repeat = 1; repeat <= repeats; repeat++) {
    for (const system of systems) {
      const label = `${system} ${repeat}/${repeats}`;
      try {
        const sample = await scenario.measure(system, options, (f, step) =>
          bar.update(label, f, step),
        );
        samples.get(system)!.push(sample);
        bar.finish(label, `${figure(sample.value)}, loss ${sample.loss}`);
      } catch (error) {
        const reason = `${scenario.name} ${label}: ${(error as Error).message}`;
        failures.push(reason);
        bar.finish(label, `failed: ${(error as Error).message}`);
      } finally {
        await stopAll();
      }
    }
  }
  return samples;
}

/** Makes the report's folder before the run, not after it. */
async function writable(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    throw new BenchUsageError(`--out ${dir}: not a writable folder (${code})`);
  }
}

/** Runs the bench with `args`; returns the exit status. */
export async function run(args: string[]): Promise<number> {
  const parsed = parse(args);
  if (parsed.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.profile) profileServers(parsed.profile);
  if (parsed.report && parsed.out !== undefined) await writable(parsed.out);
  const summaries: ScenarioSummary[] = [];
  const details: ScenarioDetail[] = [];
  const failures: string[] = [];
  for (const scenario of parsed.scenarios) {
    const samples = await runScenario(
      scenario,
      parsed.options,
      parsed.repeats,
      parsed.systems,
      failures,
    );
    const { summary, detail } = summarise(scenario, samples);
    summaries.push(summary);
    details.push(detail);
  }

  if (parsed.json) {
    process.stdout.write(
      `${JSON.stringify({ scenarios: summaries }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(formatTable(summaries));
  }
  if (parsed.report) {
    const where = await writeReport(summaries, details, {
      out: parsed.out,
      docs: parsed.docs,
      command: ["switchboard", "bench", ...args].join(" "),
    });
    process.stderr.write(`report: ${where}\n`);
  }
  for (const failure of failures) {
    process.stderr.write(`failed measurement: ${failure}\n`);
  }
  return failures.length > 0 ? 1 : 0;
}

const stop = async () => {
  process.stderr.write("\nswitchboard bench: interrupted\n");
  await stopAll();
  process.exit(130);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (error) {
  await stopAll();
  const usage =
    error instanceof BenchUsageError ||
    (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
  // parseArgs explains a value that looks like a flag over three lines.
  const [message] = (error as Error).message.split("\n");
  process.stderr.write(`switchboard bench: ${message}\n`);
  process.exitCode = usage ? 2 : 1;
}
