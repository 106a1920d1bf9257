/** Every scenario, in the order a full run measures them. */
import type { Scenario } from "../scenario.js";
import { fanoutBurst, fanoutSingle } from "./fanout.js";

export const SCENARIOS: readonly Scenario[] = [fanoutBurst, fanoutSingle];
