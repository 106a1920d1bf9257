/**
 * From samples to the figures the bench prints: the median, min and max
 * of each system over repeats, and Switchboard's ratio to each peer,
 * oriented so that above 1 means Switchboard is better.
 */
import type { Sample, Scenario } from "./scenario.js";

/** The peers a ratio is given for, as the JSON output names them. */
export const PEERS = ["socket.io", "ws", "ws-coalesced"] as const;

/** A system's figure over repeats. */
export interface Result {
  readonly system: string;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Loss summed over the repeats: a figure with loss is not a fair one. */
  readonly loss: number;
}

/** A scenario's figures, in the shape of `--json`. */
export interface ScenarioSummary {
  readonly name: string;
  readonly metric: string;
  /** Which way the figure is better. */
  readonly better: "higher" | "lower";
  readonly results: Result[];
  readonly ratios: Record<(typeof PEERS)[number], number | null>;
}

/** Secondary figures and losses, for the report beside the summary. */
export interface ScenarioDetail {
  readonly name: string;
  readonly better: "higher" | "lower";
  /** Per system: each detail's median over repeats. */
  readonly details: Record<string, Record<string, number>>;
  /** Per system: the loss of each repeat. */
  readonly losses: Record<string, number[]>;
}

/** The median of `values`; the mean of the middle two for an even count. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Summarises the samples of each system of `scenario`. */
export function summarise(
  scenario: Scenario,
  samples: Map<string, Sample[]>,
): { summary: ScenarioSummary; detail: ScenarioDetail } {
  const results: Result[] = [];
  const details: Record<string, Record<string, number>> = {};
  const losses: Record<string, number[]> = {};
  for (const [system, list] of samples) {
    if (list.length === 0) continue;
    const values = list.map((s) => s.value);
    results.push({
      system,
      median: median(values),
      min: Math.min(...values),
      max: Math.max(...values),
      loss: list.reduce((sum, s) => sum + s.loss, 0),
    });
    losses[system] = list.map((s) => s.loss);
    const names = Object.keys(list[0]?.details ?? {});
    details[system] = Object.fromEntries(
      names.map((name) => [name, median(list.map((s) => s.details[name]!))]),
    );
  }

  const own = results.find((r) => r.system === "switchboard")?.median;
  const ratios = Object.fromEntries(
    PEERS.map((peer) => {
      const theirs = results.find((r) => r.system === peer)?.median;
      if (own === undefined || theirs === undefined) return [peer, null];
      const ratio = scenario.better === "higher" ? own / theirs : theirs / own;
      return [peer, Number.isFinite(ratio) ? ratio : null];
    }),
  ) as ScenarioSummary["ratios"];

  return {
    summary: {
      name: scenario.name,
      metric: scenario.metric,
      better: scenario.better,
      results,
      ratios,
    },
    detail: { name: scenario.name, better: scenario.better, details, losses },
  };
}
