"use client";

import type {
  ConnectionState,
  Json,
  Message,
  PresenceMember,
  PublishOptions,
  PublishResult,
  SwitchboardClient,
} from "@switchboard/client";
import {
  useCallback,
  useContext,
  useEffect,
  useRef,
  useSyncExternalStore,
} from "react";

import { MissingProviderError } from "./errors.js";
import type { ChannelStatus, ClientHub } from "./hub.js";
import { HubContext } from "./provider.js";

/** An empty list, the same object on the server and the client. */
const NO_MEMBERS: readonly PresenceMember[] = [];

function useHub(name: string): ClientHub {
  const hub = useContext(HubContext);
  if (!hub) {
    throw new MissingProviderError(name);
  }
  return hub;
}

/**
 * Subscribes the component to `channel` while it is mounted, calling
 * `onMessage` for each message (the latest function given). Components
 * using the same channel share one wire subscription. Returns the
 * subscription's status: `idle` during server rendering and before the
 * first effect, then `subscribing`, `subscribed`, or `unsubscribed` when
 * the server refused or ended it.
 */
export function useChannel(
  channel: string,
  onMessage?: (message: Message) => void,
): ChannelStatus {
  const hub = useHub("useChannel");
  const handler = useRef(onMessage);

  useEffect(() => {
    handler.current = onMessage;
  });

  useEffect(() => {
    const off = hub.onMessage(channel, (message) => handler.current?.(message));
    hub.acquire(channel);
    return () => {
      off();
      hub.release(channel);
    };
  }, [hub, channel]);

  return useSyncExternalStore(
    useCallback((listener) => hub.onChange(channel, listener), [hub, channel]),
    () => hub.status(channel),
    () => "idle",
  );
}

/**
 * The members of `channel`, one per connection (`{user, client}`), kept
 * from the subscription's snapshots and join/leave events. Empty during
 * server rendering and until the subscription is live.
 */
export function usePresence(channel: string): readonly PresenceMember[] {
  const hub = useHub("usePresence");

  useEffect(() => {
    hub.acquire(channel);
    return () => hub.release(channel);
  }, [hub, channel]);

  return useSyncExternalStore(
    useCallback((listener) => hub.onChange(channel, listener), [hub, channel]),
    () => hub.members(channel),
    () => NO_MEMBERS,
  );
}

/**
 * The connection state: `connecting` during server rendering and until
 * the client exists, then the client's `disconnected`, `connecting`,
 * `connected` or `closed`.
 */
export function useConnectionState(): ConnectionState {
  const hub = useHub("useConnectionState");
  return useSyncExternalStore(
    useCallback((listener) => hub.onState(listener), [hub]),
    () => hub.state(),
    () => "connecting",
  );
}

/**
 * A stable function publishing on `channel` through the provider's client.
 * While offline the publish waits and is sent on reconnect, under an
 * idempotency key, so it lands once. Call it from event handlers or
 * effects, not during rendering; a call before the provider started waits
 * for it.
 */
export function usePublish(
  channel: string,
): (data: Json, options?: PublishOptions) => Promise<PublishResult> {
  const hub = useHub("usePublish");
  return useCallback(
    (data, options) => hub.publish(channel, data, options),
    [hub, channel],
  );
}

/**
 * The provider's client, for calls the hooks do not cover (`history`,
 * `presence`); undefined during server rendering and before the provider's
 * first effect.
 */
export function useSwitchboard(): SwitchboardClient | undefined {
  const hub = useHub("useSwitchboard");
  return useSyncExternalStore(
    useCallback((listener) => hub.onState(listener), [hub]),
    () => hub.current,
    () => undefined,
  );
}
