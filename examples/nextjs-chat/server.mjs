// Serves the chat. Without SWITCHBOARD_URL, a Switchboard node runs on the
// same port as the pages (/ws); with it, the pages talk to that fleet.
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { createNextServer } from "@switchboard/next";
import next from "next";

const { values } = parseArgs({
  options: { dev: { type: "boolean", default: false } },
});
const dev = values.dev;
const hostname = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);

if (process.env.SWITCHBOARD_URL) {
  await serveAlone();
} else {
  await serveWithNode();
}

async function serveWithNode() {
  // Route handlers read these to mint tokens and publish; a random secret
  // means tokens last only as long as this process.
  process.env.SWITCHBOARD_TOKEN_SECRET ??= randomBytes(32).toString("hex");
  process.env.SWITCHBOARD_API_KEY ??= randomBytes(24).toString("hex");
  const app = await createNextServer({
    dev,
    hostname,
    port,
    api: true,
    nodeOptions: {
      tokenSecret: process.env.SWITCHBOARD_TOKEN_SECRET,
      apiKey: process.env.SWITCHBOARD_API_KEY,
      heartbeat: Number(process.env.SWITCHBOARD_HEARTBEAT ?? 25_000),
      pongTimeout: Number(process.env.SWITCHBOARD_PONG_TIMEOUT ?? 10_000),
      presenceTtl: Number(process.env.SWITCHBOARD_PRESENCE_TTL ?? 30_000),
      namespaces: {
        chat: { historySize: 200 },
        typing: { historySize: 0, presence: false },
      },
    },
  });
  const bound = await app.listen();
  process.env.SWITCHBOARD_API_URL = `http://127.0.0.1:${bound.port}`;
  console.log(`chat ready on http://${hostname}:${bound.port} (${mode()})`);
  stopOnSignal(() => app.close());
}

async function serveAlone() {
  const app = next({ dev, hostname, port });
  await app.prepare();
  const server = createServer(app.getRequestHandler());
  await new Promise((resolve) => server.listen(port, hostname, resolve));
  console.log(
    `chat ready on http://${hostname}:${server.address().port} ` +
      `(${mode()}, fleet ${process.env.SWITCHBOARD_URL})`,
  );
  stopOnSignal(async () => {
    server.close();
    await app.close();
  });
}

function mode() {
  return dev ? "development" : "production";
}

function stopOnSignal(stop) {
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.once(signal, () => {
      stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}
