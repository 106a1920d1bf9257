import { parseArgs } from "node:util";

import { SwitchboardClient, type Message } from "@switchboard/client";
import { isPosition, type Position } from "@switchboard/protocol";

import { UsageError } from "./errors.js";

const HELP = `Usage: switchboard subscribe <channel> [options]

Prints each message of a channel on a line: channel, epoch:offset, data.
Reconnects and recovers by itself; a discontinuity (messages that could
not be recovered) is reported on stderr. Ctrl-C stops it.

Options:
  --url <url>          node's WebSocket address
                       (default ws://127.0.0.1:8080/ws, env SWITCHBOARD_URL)
  --token <jwt>        connection token (env SWITCHBOARD_TOKEN)
  --since <e:o>        recover from this position (epoch:offset)
  --presence           also print join and leave on stderr
  --count <n>          exit after n messages
  --json               print each message as one JSON object
  -h, --help           this help
`;

/** `switchboard subscribe`: prints a channel's messages as they arrive. */
export async function subscribe(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      token: { type: "string" },
      since: { type: "string" },
      presence: { type: "boolean" },
      count: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [channel, ...rest] = positionals;
  if (channel === undefined || rest.length > 0) {
    throw new UsageError("usage: switchboard subscribe <channel>");
  }
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!Number.isSafeInteger(count) && count !== Infinity) {
    throw new UsageError(`--count must be an integer, got "${values.count}"`);
  }

  const client = new SwitchboardClient({
    url: webSocketUrl(
      values.url ?? process.env.SWITCHBOARD_URL ?? "ws://127.0.0.1:8080/ws",
    ),
    token: values.token ?? process.env.SWITCHBOARD_TOKEN,
  });
  const subscription = client.subscribe(channel, {
    presence: values.presence === true,
    since: values.since === undefined ? undefined : position(values.since),
  });

  return new Promise((resolve) => {
    let received = 0;
    let finished = false;
    const finish = (status: number) => {
      if (finished) return;
      finished = true;
      void client.close().then(() => resolve(status));
    };
    subscription.on("message", (message: Message) => {
      process.stdout.write(`${format(message, values.json === true)}\n`);
      received += 1;
      if (received >= count) finish(0);
    });
    subscription.on("discontinuity", (gap) => {
      process.stderr.write(`discontinuity: ${JSON.stringify(gap)}\n`);
    });
    subscription.on("join", ({ user }) => {
      process.stderr.write(`join ${user}\n`);
    });
    subscription.on("leave", ({ user }) => {
      process.stderr.write(`leave ${user}\n`);
    });
    subscription.on("error", (error) => {
      process.stderr.write(`switchboard: ${error.message}\n`);
      finish(1);
    });
    client.on("connected", ({ node }) => {
      process.stderr.write(`connected to ${node}\n`);
    });
    subscription.on("subscribed", ({ offset }) => {
      process.stderr.write(`subscribed to ${channel} at offset ${offset}\n`);
    });
    subscription.on("unsubscribed", ({ code, reason, resubscribe }) => {
      if (resubscribe || finished) return;
      process.stderr.write(`switchboard: unsubscribed: ${code} ${reason}\n`);
      finish(1);
    });
    client.on("disconnected", ({ code, reason, reconnect }) => {
      if (finished) return;
      const what = `disconnected: ${code} ${reason}`.trim();
      if (reconnect) {
        process.stderr.write(`${what}; reconnecting\n`);
        return;
      }
      process.stderr.write(`switchboard: ${what}\n`);
      finish(1);
    });
    client.connect().catch((error: Error) => {
      if (finished) return;
      process.stderr.write(`switchboard: ${error.message}\n`);
      finish(1);
    });
    process.once("SIGINT", () => finish(0));
    process.once("SIGTERM", () => finish(0));
  });
}

function format(message: Message, json: boolean): string {
  if (json) return JSON.stringify(message);
  const { channel, epoch, offset, data } = message;
  return `${channel} ${epoch}:${offset} ${JSON.stringify(data)}`;
}

function position(text: string): Position {
  const colon = text.lastIndexOf(":");
  const candidate = {
    epoch: text.slice(0, colon),
    offset: Number(text.slice(colon + 1)),
  };
  if (colon < 1 || !isPosition(candidate)) {
    throw new UsageError(`--since must be epoch:offset, got "${text}"`);
  }
  return candidate;
}

function webSocketUrl(text: string): string {
  try {
    return new URL(text).toString();
  } catch {
    throw new UsageError(`--url must be a URL, got "${text}"`);
  }
}
