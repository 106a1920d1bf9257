import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The bench's entry, in the repository beside this package. */
const ENTRY = fileURLToPath(new URL("../../../bench/run.ts", import.meta.url));

const MISSING =
  "switchboard bench runs from a clone of the Switchboard repository\n" +
  "(it needs bench/ and its dev dependencies: npm ci at the top)\n";

/**
 * `switchboard bench`: runs bench/run.ts under tsx with the same
 * arguments, `--help` included, and returns its exit status.
 */
export async function bench(args: string[]): Promise<number> {
  if (!existsSync(ENTRY)) {
    process.stderr.write(MISSING);
    return 1;
  }
  let loader: string;
  try {
    loader = import.meta.resolve("tsx");
  } catch {
    process.stderr.write(MISSING);
    return 1;
  }
  const child = spawn(process.execPath, ["--import", loader, ENTRY, ...args], {
    stdio: "inherit",
  });
  // The bench ends its own processes on a signal; wait for it to exit.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}
