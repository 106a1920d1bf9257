export {
  DEFAULT_NEXT_UPGRADE_PREFIXES,
  attachSwitchboard,
} from "./one-port.js";
export type { AttachOptions } from "./one-port.js";
export { createNextServer } from "./next-server.js";
export type { NextServer, NextServerOptions } from "./next-server.js";
