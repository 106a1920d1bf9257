import { parseArgs } from "node:util";

import { createNode, type GroupView } from "@switchboard/server";
import { pino } from "pino";

import { loadSettings, optionHelp, startFlags } from "./config.js";
import {
  announceListening,
  joinGroup,
  runPrimary,
  workerId,
} from "./workers.js";

const HELP = `Usage: switchboard start [options]

Starts one Switchboard node (the memory engine unless --engine redis).
Each option is a flag, a SWITCHBOARD_* environment variable or a key of
the JSON config file, looked up in that order. Durations take ms or a
unit (25s, 5m); sizes take bytes or a unit (64KiB, 1MiB). Namespaces are
set in the config file.

SIGTERM or SIGINT drains the node and exits 0; a second signal exits 1.
With --workers N (and --engine redis) N node processes share the port;
a dead one is started again, and a signal drains them all.

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
  const worker = workerId();
  const logger = pino(
    {
      level: settings.logLevel,
      base: worker ? { pid: process.pid, worker } : { pid: process.pid },
    },
    pino.destination(2),
  );
  if (settings.workers > 1 && !worker) {
    return runPrimary(settings.workers, logger);
  }

  let group: GroupView | undefined;
  let drainOnRequest = () => {};
  const node = createNode({
    ...settings.node,
    nodeId: settings.node.nodeId ?? (worker && `worker-${worker}`),
    logger,
    group: worker
      ? {
          readiness: () => group!.readiness(),
          metrics: () => group!.metrics(),
        }
      : undefined,
  });
  if (worker) {
    node.metrics.registry.setDefaultLabels({ worker });
    group = joinGroup({
      readiness: () => node.readiness(),
      metrics: () => node.metrics.registry.getMetricsAsJSON(),
      drain: () => drainOnRequest(),
    });
  }
  const { host, port } = await node.listen();
  const origin = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const url = `ws://${origin}${node.options.path}`;
  if (worker) {
    announceListening(url);
  } else {
    process.stdout.write(
      `Switchboard listening on ${url} (HTTP API on http://${origin}/api)\n`,
    );
  }

  return new Promise((resolve) => {
    let draining = false;
    const drain = () => {
      if (draining) return;
      draining = true;
      void node.drain().then(() => {
        // The channel to the primary would keep a worker alive.
        if (worker) process.disconnect?.();
        resolve(0);
      });
    };
    const onSignal = (signal: NodeJS.Signals) => {
      // A worker drains once, whether the signal reached it from a
      // terminal or through the primary; only the primary exits at once.
      if (draining && worker) return;
      if (draining) {
        logger.warn({ signal }, "second signal: exiting at once");
        process.exit(1);
      }
      logger.info({ signal }, "signal: draining");
      if (!worker) {
        process.stderr.write(
          `draining: clients are told to reconnect; exit within` +
            ` ${node.options.drainTimeout} ms (a second signal exits now)\n`,
        );
      }
      drain();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    drainOnRequest = drain;
  });
}
