import { mintToken } from "@switchboard/server-sdk";

import { currentUser, required } from "../../lib/config";

export const dynamic = "force-dynamic";

/** A connection token for the signed-in user, for the browser's client. */
export async function GET() {
  const user = await currentUser();
  if (!user) {
    return Response.json({ error: "signed out" }, { status: 401 });
  }
  const token = await mintToken({
    user,
    secret: required("SWITCHBOARD_TOKEN_SECRET"),
    grants: {
      subscribe: ["chat:*", "typing:*"],
      publish: ["chat:*", "typing:*"],
    },
    expiresInMs: Number(process.env.SWITCHBOARD_TOKEN_TTL_MS ?? 600_000),
  });
  return Response.json({ token }, { headers: { "cache-control": "no-store" } });
}
