import { request } from "node:http";

/**
 * The HTTP status a hand-made WebSocket upgrade request to `path` gets:
 * 101, or the refusal.
 */
export function upgradeStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    req.on("upgrade", (response, socket) => {
      socket.destroy();
      resolve(response.statusCode!);
    });
    req.on("response", (response) => {
      response.resume();
      resolve(response.statusCode!);
    });
    req.on("error", reject);
    req.end();
  });
}
