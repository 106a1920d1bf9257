export { SwitchboardNode, createNode } from "./node.js";
export {
  DEFAULTS,
  OPTION_SPECS,
  namespaceOptions,
  resolveOptions,
} from "./options.js";
export type {
  GroupView,
  NamespaceOptions,
  NodeOptions,
  OptionKind,
  OptionSpec,
  Readiness,
  ResolvedNamespace,
  ResolvedOptions,
} from "./options.js";
export { ConfigError, InsecureError, SwitchboardError } from "./errors.js";
export type { SwitchboardErrorCode } from "./errors.js";
export { silentLogger } from "./logger.js";
export type { LogFields, Logger } from "./logger.js";
export type { PublishOutcome } from "./engine.js";
