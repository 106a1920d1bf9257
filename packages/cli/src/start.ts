import { parseArgs } from "node:util";

import { createNode } from "@switchboard/server";
import { pino } from "pino";

import { loadSettings, optionHelp, startFlags } from "./config.js";

const HELP = `Usage: switchboard start [options]

Starts one Switchboard node (the memory engine unless --engine redis).
Each option is a flag, a SWITCHBOARD_* environment variable or a key of
the JSON config file, looked up in that order. Durations take ms or a
unit (25s, 5m); sizes take bytes or a unit (64KiB, 1MiB). Namespaces are
set in the config file.

SIGTERM or SIGINT drains the node and exits 0; a second signal exits 1.

Options:
${optionHelp()}
`;

/** `switchboard start`: runs a node until a signal drains it. */
export async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: startFlags(), strict: true });
  const flags = values as Record<string, string | boolean | undefined>;
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const settings = loadSettings(flags, process.env);
  const logger = pino(
    { level: settings.logLevel, base: { pid: process.pid } },
    pino.destination(2),
  );
  const node = createNode({ ...settings.node, logger });
  const { host, port } = await node.listen();
  const origin = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  process.stdout.write(
    `Switchboard listening on ws://${origin}${node.options.path}` +
      ` (HTTP API on http://${origin}/api)\n`,
  );

  return new Promise((resolve) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining) {
        logger.warn({ signal }, "second signal: exiting at once");
        process.exit(1);
      }
      draining = true;
      logger.info({ signal }, "signal: draining");
      process.stderr.write(
        `draining: clients are told to reconnect; exit within` +
          ` ${node.options.drainTimeout} ms (a second signal exits now)\n`,
      );
      void node.drain().then(() => resolve(0));
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
