/**
 * What a scenario is: a name, the figure it measures and which way is
 * better, the systems it compares, and how to measure one system once.
 */
import type { SystemName } from "./fleet.js";

/** Options of a run that scenarios size themselves by. */
export interface RunOptions {
  /** Smaller sizes and shorter phases. */
  readonly quick: boolean;
  /** Seconds of each measured phase. */
  readonly seconds: number;
  /** Connections of each scenario, instead of its own sizes. */
  readonly size?: number;
}

/** One measurement of one system. */
export interface Sample {
  /** The headline figure. */
  readonly value: number;
  /** Messages not delivered, slow-consumer closes, failed handshakes. */
  readonly loss: number;
  /** Secondary figures, named with their unit, for the report. */
  readonly details: Record<string, number>;
}

/** Reports how far a measurement is, 0 to 1, and what it does now. */
export type Progress = (fraction: number, step: string) => void;

export interface Scenario {
  readonly name: string;
  /** The headline figure, with its unit. */
  readonly metric: string;
  readonly better: "higher" | "lower";
  readonly systems: readonly SystemName[];
  measure(
    system: SystemName,
    options: RunOptions,
    progress: Progress,
  ): Promise<Sample>;
}

/** The sizes of a scenario: `size` from the options, or full or quick. */
export function sizes(
  options: RunOptions,
  full: number[],
  quick: number[],
): number[] {
  if (options.size !== undefined) return [options.size];
  return options.quick ? quick : full;
}
