import { readFileSync } from "node:fs";

import { ConfigError, InsecureError } from "@switchboard/server";

import { bench } from "./bench.js";
import { cluster } from "./cluster.js";
import { UsageError } from "./errors.js";
import { nginx } from "./nginx.js";
import { publish } from "./publish.js";
import { start } from "./start.js";
import { subscribe } from "./subscribe.js";

const VERSION: string = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).version;

const HELP = `Usage: switchboard <command> [options]

Commands:
  start       run a node (switchboard start --help)
  cluster     run several nodes behind nginx, for development
              (switchboard cluster --help)
  nginx       print an nginx config for nodes (switchboard nginx --help)
  publish     publish a message (switchboard publish --help)
  subscribe   print a channel's messages (switchboard subscribe --help)
  bench       compare with Socket.IO and raw ws, from a clone of the
              repository (switchboard bench --help)

Options:
  -h, --help      this help
  -v, --version   the version
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  start,
  cluster,
  nginx,
  publish,
  subscribe,
  bench,
};

/**
 * Runs the CLI and returns the exit status. A bad flag, variable or config
 * value prints one line and returns 2.
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === "-h" || command === "--help") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "-v" || command === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(
      `switchboard: unknown command "${command}" (see --help)\n`,
    );
    return 2;
  }
  try {
    return await run(args);
  } catch (error) {
    return report(error);
  }
}

function report(error: unknown): number {
  const usage =
    error instanceof UsageError ||
    error instanceof ConfigError ||
    (error instanceof TypeError &&
      "code" in error &&
      String(error.code).startsWith("ERR_PARSE_ARGS"));
  if (usage || error instanceof InsecureError) {
    const [line] = (error as Error).message.split("\n");
    process.stderr.write(`switchboard: ${line}\n`);
    return 2;
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE" || code === "EACCES") {
    const { address, port } = error as { address?: string; port?: number };
    const reason = code === "EADDRINUSE" ? "is in use" : "is not allowed";
    process.stderr.write(`switchboard: ${address}:${port} ${reason}\n`);
    return 1;
  }
  process.stderr.write(`switchboard: ${String(error)}\n`);
  return 1;
}
