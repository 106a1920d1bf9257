"use client";

import { UnauthorizedError, type Message } from "@switchboard/client";
import { SwitchboardProvider } from "@switchboard/react";
import { useCallback } from "react";

import { Room } from "./room";

/** Fetches a connection token for the signed-in user. */
async function fetchToken(): Promise<string> {
  const response = await fetch("/token", { cache: "no-store" });
  // Signed out for good: the client stops instead of retrying.
  if (response.status === 401) throw new UnauthorizedError("signed out");
  if (!response.ok) throw new Error(`token endpoint: ${response.status}`);
  return ((await response.json()) as { token: string }).token;
}

export interface ChatProps {
  room: string;
  rooms: string[];
  user: string;
  url: string;
}

/** The chat page's client part: one connection for every room. */
export function Chat({ room, rooms, user, url }: ChatProps) {
  const token = useCallback(fetchToken, []);
  return (
    <SwitchboardProvider url={url} token={token}>
      <Room key={room} room={room} rooms={rooms} user={user} />
    </SwitchboardProvider>
  );
}

export type { Message };
