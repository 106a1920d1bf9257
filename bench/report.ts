import type { ScenarioDetail, ScenarioSummary } from "./summary.js";
export { formatTable } from "./table.js";
export async function writeReport(
  _s: ScenarioSummary[],
  _d: ScenarioDetail[],
  _o: { out?: string; docs: boolean; command: string },
): Promise<string> {
  return "";
}
