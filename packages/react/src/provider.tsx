"use client";

import type { ClientOptions } from "@switchboard/client";
import { createContext, useEffect, useState, type ReactNode } from "react";

import { ClientHub, type TokenSource } from "./hub.js";

/** The hub of the nearest provider; hooks throw without one. */
export const HubContext = createContext<ClientHub | null>(null);

/** Props of `SwitchboardProvider`. */
export interface SwitchboardProviderProps {
  /**
   * The node's endpoint, e.g. `wss://realtime.example.com/ws`. A path such
   * as `/ws` is resolved against the page's address in the browser.
   * Changing it closes the client and opens a new one.
   */
  url: string;
  /**
   * A token, or a function that fetches one (called before connecting and
   * again before the token expires, so subscriptions survive the refresh).
   * The latest function given is used. Another string, or a token given
   * where there was none, closes the client and opens a new one with it;
   * so does any new token once the client stopped for good.
   * @default anonymous
   */
  token?: TokenSource;
  /** Other options of `SwitchboardClient` (backoff, timeouts, debug). */
  options?: Omit<ClientOptions, "url" | "token">;
  children?: ReactNode;
}

/**
 * Holds one Switchboard client for the components below it. The client is
 * created and connected in an effect, so server rendering never touches a
 * WebSocket, and it survives StrictMode's double effects.
 */
export function SwitchboardProvider(props: SwitchboardProviderProps) {
  const { url, token, options, children } = props;
  const [hub] = useState(() => new ClientHub());

  useEffect(() => {
    hub.setToken(token);
    hub.options = options ?? {};
  });

  useEffect(() => {
    if (hub.url !== "" && hub.url !== url) hub.closeClient();
    hub.url = url;
    hub.start();
    return () => hub.stop();
  }, [hub, url]);

  return <HubContext.Provider value={hub}>{children}</HubContext.Provider>;
}
