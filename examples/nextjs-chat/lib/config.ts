import { cookies } from "next/headers";

/** The cookie holding the signed-in user's display name. */
export const USER_COOKIE = "chat_user";

/** Names a user may choose: what a token's `sub` and a presence list show. */
export const USER_PATTERN = /^[A-Za-z0-9_-]{1,24}$/;

/** Rooms listed on the home page; any name of the same shape works. */
export const ROOMS = ["lobby", "random", "help"] as const;

/** Room names: the part after `chat:` in a channel name. */
export const ROOM_PATTERN = /^[a-z0-9-]{1,40}$/;

/**
 * Where the browser connects: a separate fleet's endpoint, or `/ws` on
 * the page's own host when the node shares the port.
 */
export function webSocketUrl(): string {
  return process.env.SWITCHBOARD_URL ?? "/ws";
}

/** The signed-in user, from the cookie; undefined when signed out. */
export async function currentUser(): Promise<string | undefined> {
  const name = (await cookies()).get(USER_COOKIE)?.value;
  return name && USER_PATTERN.test(name) ? name : undefined;
}

/** A setting the server cannot run without. */
export function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}
