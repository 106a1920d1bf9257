import { parseArgs } from "node:util";

import { isValidChannel } from "@switchboard/protocol";

import { UsageError } from "./errors.js";

const HELP = `Usage: switchboard publish <channel> <json> [options]

Publishes one message through a node's HTTP API and prints its position.

Options:
  --url <url>       node's HTTP address (default http://127.0.0.1:8080,
                    env SWITCHBOARD_URL)
  --api-key <key>   API key (env SWITCHBOARD_API_KEY)
  --key <key>       idempotency key: a retry with it publishes once
  -h, --help        this help
`;

/** `switchboard publish`: one message over the HTTP API. */
export async function publish(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      "api-key": { type: "string" },
      key: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [channel, text, ...rest] = positionals;
  if (channel === undefined || text === undefined || rest.length > 0) {
    throw new UsageError("usage: switchboard publish <channel> <json>");
  }
  if (!isValidChannel(channel)) {
    throw new UsageError(
      `channel must be 1-200 characters of A-Za-z0-9_-:.@=/, got "${channel}"`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new UsageError(
      `message must be JSON, got ${text}; quote a string as '"text"'`,
    );
  }

  const base =
    values.url ?? process.env.SWITCHBOARD_URL ?? "http://127.0.0.1:8080";
  const apiKey = values["api-key"] ?? process.env.SWITCHBOARD_API_KEY;
  const url = new URL("/api/publish", httpUrl(base));
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}),
      },
      body: JSON.stringify({ channel, data, key: values.key }),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } })
      .cause;
    const reason = cause?.code ?? cause?.message ?? String(error);
    process.stderr.write(
      `publish failed: cannot reach ${url.origin} (${reason})\n`,
    );
    return 1;
  }
  const body = await response.text();
  if (!response.ok) {
    const reason = errorMessage(body) ?? response.statusText;
    process.stderr.write(`publish failed: ${response.status} ${reason}\n`);
    return 1;
  }
  process.stdout.write(`${body}\n`);
  return 0;
}

/** Accepts ws:// and wss:// addresses too, for symmetry with subscribe. */
function httpUrl(base: string): URL {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UsageError(`--url must be a URL, got "${base}"`);
  }
  if (url.protocol === "ws:") url.protocol = "http:";
  if (url.protocol === "wss:") url.protocol = "https:";
  return url;
}

function errorMessage(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } };
    return parsed.error?.message;
  } catch {
    return undefined;
  }
}
