/**
 * The report of a run: results.json, table.md, report.html with one chart
 * per scenario (Chart.js, inlined: the page needs no network) and
 * report.png, a screenshot of it taken by Debian's Chromium. With `docs`
 * it also rewrites the results section of docs/PERFORMANCE.md and
 * docs/performance.png.
 */
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import type { ScenarioDetail, ScenarioSummary } from "./summary.js";
import { figure, markdownTable } from "./table.js";

export { formatTable } from "./table.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
];
/** The results section of docs/PERFORMANCE.md lies between these. */
const START_MARK = "<!-- bench results: start -->";
const END_MARK = "<!-- bench results: end -->";
const COLORS: Record<string, string> = {
  switchboard: "#2563eb",
  "socket.io": "#f59e0b",
  ws: "#6b7280",
  "ws-coalesced": "#10b981",
};

/** How a run was made, written beside its figures. */
export interface RunInfo {
  readonly out?: string;
  readonly docs: boolean;
  readonly command: string;
}

/** Markdown of every scenario's secondary figures, a table each. */
function detailTables(details: ScenarioDetail[]): string {
  return details
    .map((detail) => {
      const systems = Object.keys(detail.details);
      const names = Object.keys(detail.details[systems[0] ?? ""] ?? {});
      if (names.length === 0) return "";
      const rows = systems.map(
        (system) =>
          `| ${system} | ${names
            .map((name) => figure(detail.details[system]![name]!))
            .join(" | ")} |`,
      );
      return [
        `\`${detail.name}\`, medians:`,
        "",
        `| system | ${names.join(" | ")} |`,
        `| --- | ${names.map(() => "---").join(" | ")} |`,
        ...rows,
        "",
      ].join("\n");
    })
    .filter(Boolean)
    .join("\n");
}

/** The markdown of a run: when, how, the table and the details. */
function markdown(
  summaries: ScenarioSummary[],
  details: ScenarioDetail[],
  info: RunInfo,
  date: string,
): string {
  return [
    `Run of ${date}, \`${info.command}\`, on ${process.platform}` +
      ` with Node ${process.version}. The loss, summed over the repeats,` +
      " counts messages not delivered, slow-consumer closes, failed" +
      " handshakes and clients that did not recover.",
    "",
    markdownTable(summaries),
    detailTables(details),
  ].join("\n");
}

/** The page: one bar chart per scenario, medians with min-max ranges. */
async function html(
  summaries: ScenarioSummary[],
  command: string,
  date: string,
): Promise<string> {
  const entry = fileURLToPath(import.meta.resolve("chart.js"));
  const library = await readFile(
    join(dirname(entry), "chart.umd.min.js"),
    "utf8",
  );
  const charts = summaries.map((summary) => ({
    name: summary.name,
    metric: summary.metric,
    lower: summary.better === "lower",
    systems: summary.results.map((r) =>
      r.loss > 0 ? `${r.system} (loss ${r.loss})` : r.system,
    ),
    medians: summary.results.map((r) => r.median),
    ranges: summary.results.map((r) => [r.min, r.max]),
    colors: summary.results.map((r) => COLORS[r.system] ?? "#999999"),
  }));
  const data = JSON.stringify(charts).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Switchboard bench, ${date}</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 24px; color: #111; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #charts { display: grid; grid-template-columns: repeat(2, 560px); gap: 16px; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: 12px; }
  .card h2 { font-size: 15px; margin: 0; }
  .card p { margin: 2px 0 8px; color: #555; font-size: 12px; }
</style>
</head>
<body>
<div id="report">
<h1>Switchboard against Socket.IO and raw ws</h1>
<p>${date}, <code>${escapeHtml(command)}</code>. Bars: median over
repeats; thin bars: min to max.</p>
<div id="charts"></div>
</div>
<script>${library}</script>
<script>
const charts = ${data};
for (const chart of charts) {
  const card = document.createElement("div");
  card.className = "card";
  card.innerHTML = "<h2></h2><p></p><canvas width=536 height=260></canvas>";
  card.querySelector("h2").textContent = chart.name;
  card.querySelector("p").textContent =
    chart.metric + (chart.lower ? " (lower is better)" : " (higher is better)");
  document.getElementById("charts").append(card);
  new Chart(card.querySelector("canvas"), {
    type: "bar",
    data: {
      labels: chart.systems,
      datasets: [
        { label: "median", data: chart.medians, backgroundColor: chart.colors },
        {
          label: "min - max",
          data: chart.ranges,
          backgroundColor: "rgba(0,0,0,0.35)",
          barPercentage: 0.15,
          grouped: false,
        },
      ],
    },
    options: {
      animation: false,
      responsive: false,
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true } },
    },
  });
}
document.body.dataset.ready = "yes";
</script>
</body>
</html>
`;
}

/** Screenshots the report with Chromium; false when it is not installed. */
async function screenshot(page: string, png: string): Promise<boolean> {
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
    });
  } catch {
    return false;
  }
  try {
    const tab = await browser.newPage({
      viewport: { width: 1200, height: 800 },
    });
    await tab.goto(`file://${page}`);
    await tab.waitForSelector("body[data-ready=yes]");
    await tab.locator("#report").screenshot({ path: png });
    return true;
  } finally {
    await browser.close();
  }
}

/** Replaces the results section of docs/PERFORMANCE.md. */
async function updateDocs(section: string, png: string): Promise<void> {
  const path = join(ROOT, "docs", "PERFORMANCE.md");
  const text = await readFile(path, "utf8");
  const start = text.indexOf(START_MARK);
  const end = text.indexOf(END_MARK);
  if (start < 0 || end < start) {
    throw new Error(`${path} has no "${START_MARK}" ... "${END_MARK}"`);
  }
  const updated =
    text.slice(0, start + START_MARK.length) +
    `\n\n${section}\n` +
    text.slice(end);
  await writeFile(path, updated);
  await copyFile(png, join(ROOT, "docs", "performance.png"));
}

/** Writes the report; returns the folder it is in. */
export async function writeReport(
  summaries: ScenarioSummary[],
  details: ScenarioDetail[],
  info: RunInfo,
): Promise<string> {
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const out = info.out ?? join(ROOT, "bench", "results", stamp);
  await mkdir(out, { recursive: true });

  const section = markdown(summaries, details, info, `${date} UTC`);
  const page = join(out, "report.html");
  const png = join(out, "report.png");
  await writeFile(
    join(out, "results.json"),
    `${JSON.stringify(
      { date, command: info.command, scenarios: summaries, details },
      null,
      2,
    )}\n`,
  );
  await writeFile(join(out, "table.md"), section);
  await writeFile(page, await html(summaries, info.command, `${date} UTC`));
  if (!(await screenshot(page, png))) {
    process.stderr.write(
      `no PNG: ${CHROMIUM} is missing (apt-get install chromium)\n`,
    );
    return out;
  }
  if (info.docs) await updateDocs(section, png);
  return out;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}
