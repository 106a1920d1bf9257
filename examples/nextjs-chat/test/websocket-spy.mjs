// Preloaded into the example's server process by the tests (node
// --import): a global WebSocket that records every construction in the
// file named by WEBSOCKET_SPY_FILE and refuses to connect. Node 20 has no
// global WebSocket, so a component that built one while rendering on the
// server would meet this spy instead of a ReferenceError.
import { appendFileSync } from "node:fs";

const file = process.env.WEBSOCKET_SPY_FILE;

globalThis.WebSocket = class SpyWebSocket {
  constructor(url) {
    if (file) appendFileSync(file, `${url}\n`);
    throw new Error("WebSocket constructed in the server process");
  }
};
