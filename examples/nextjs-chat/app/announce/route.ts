import { SwitchboardApi } from "@switchboard/server-sdk";

import { MAX_TEXT } from "../../components/messages";
import { ROOM_PATTERN, currentUser, required } from "../../lib/config";

// The server SDK needs only fetch and Web Crypto: this route runs on the
// edge runtime as well as on Node.
export const runtime = "edge";

/**
 * Publishes a notice into a room from the server, through the node's
 * HTTP API: what a webhook or a background job would do.
 */
export async function POST(request: Request) {
  const user = await currentUser();
  if (!user) return Response.json({ error: "signed out" }, { status: 401 });
  const body = (await request.json().catch(() => ({}))) as {
    room?: unknown;
    text?: unknown;
  };
  const { room, text } = body;
  if (typeof room !== "string" || !ROOM_PATTERN.test(room)) {
    return Response.json({ error: "bad room" }, { status: 400 });
  }
  if (typeof text !== "string" || text.length === 0 || text.length > MAX_TEXT) {
    return Response.json(
      { error: `text: 1-${MAX_TEXT} characters` },
      { status: 400 },
    );
  }
  const api = new SwitchboardApi({
    url: required("SWITCHBOARD_API_URL"),
    apiKey: process.env.SWITCHBOARD_API_KEY,
  });
  const result = await api.publish(`chat:${room}`, {
    text,
    notice: true,
    by: user,
  });
  return Response.json(result);
}
