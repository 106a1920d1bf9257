"use client";

export { SwitchboardProvider } from "./provider.js";
export type { SwitchboardProviderProps } from "./provider.js";
export {
  useChannel,
  useConnectionState,
  usePresence,
  usePublish,
  useSwitchboard,
} from "./hooks.js";
export type { ChannelStatus, TokenSource } from "./hub.js";
export { MissingProviderError } from "./errors.js";
export type {
  ConnectionState,
  Json,
  Message,
  PresenceMember,
  PublishOptions,
  PublishResult,
} from "@switchboard/client";
