/**
 * The results as text: the terminal table and the markdown table of the
 * report and docs/PERFORMANCE.md.
 */
import { PEERS, type ScenarioSummary } from "./summary.js";

/**
 * A figure with 3 significant digits, large ones with k or M; a whole
 * number under 1000 as it is.
 */
export function figure(value: number): string {
  if (!Number.isFinite(value)) return "-";
  const abs = Math.abs(value);
  if (Number.isInteger(value) && abs < 1e3) return String(value);
  if (abs >= 1e6) return `${(value / 1e6).toPrecision(3)} M`;
  if (abs >= 1e3) return `${(value / 1e3).toPrecision(3)} k`;
  return value.toPrecision(3);
}

function ratio(value: number | null): string {
  return value === null ? "-" : `${value.toFixed(2)}x`;
}

/** One row per scenario and system: median [min-max], loss, ratios. */
function rows(summaries: ScenarioSummary[]): string[][] {
  const table: string[][] = [];
  for (const summary of summaries) {
    for (const [i, result] of summary.results.entries()) {
      const own = result.system === "switchboard";
      table.push([
        i === 0 ? summary.name : "",
        result.system,
        figure(result.median),
        `${figure(result.min)} - ${figure(result.max)}`,
        String(result.loss),
        own ? PEERS.map((p) => ratio(summary.ratios[p])).join(" / ") : "",
      ]);
    }
  }
  return table;
}

const HEADER = [
  "scenario",
  "system",
  "median",
  "min - max",
  "loss",
  "ratio vs socket.io / ws / ws-coalesced",
];

/** The table for the terminal, with each scenario's metric under it. */
export function formatTable(summaries: ScenarioSummary[]): string {
  const body = rows(summaries);
  const widths = HEADER.map((h, i) =>
    Math.max(h.length, ...body.map((row) => row[i]!.length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  const metrics = summaries.map(
    (s) =>
      `${s.name}: ${s.metric}` +
      (s.better === "lower" ? " (lower is better)" : ""),
  );
  return [
    line(HEADER),
    line(widths.map((w) => "-".repeat(w))),
    ...body.map(line),
    "",
    ...metrics,
    "",
  ].join("\n");
}

/** The same table in markdown, with the metrics as a list under it. */
export function markdownTable(summaries: ScenarioSummary[]): string {
  const body = rows(summaries);
  const line = (row: string[]) => `| ${row.join(" | ")} |`;
  const metrics = summaries.map((s) => {
    const lower = s.better === "lower";
    return `- \`${s.name}\`: ${s.metric}${lower ? " (lower is better)" : ""}`;
  });
  return [
    line(HEADER),
    line(HEADER.map(() => "---")),
    ...body.map(line),
    "",
    ...metrics,
    "",
  ].join("\n");
}
