/** Every scenario, in the order a full run measures them. */
import type { Scenario } from "../scenario.js";
import { channels } from "./channels.js";
import { connectStorm } from "./connect-storm.js";
import { crossNode } from "./cross-node.js";
import { fanoutBurst, fanoutSingle } from "./fanout.js";
import { idle } from "./idle.js";
import { recoveryStorm } from "./recovery-storm.js";

export const SCENARIOS: readonly Scenario[] = [
  idle,
  fanoutBurst,
  fanoutSingle,
  channels,
  crossNode,
  connectStorm,
  recoveryStorm,
];
