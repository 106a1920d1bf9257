/** Fields attached to a log line: `connId`, `channel`, `code`, ... */
export type LogFields = Record<string, unknown>;

/**
 * The structured logger the node writes to. Its shape matches pino's, so a
 * pino logger can be passed as is. The node logs nothing per message at
 * `info`; every dropped input is logged once at `debug`.
 */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
}

function discard(): void {}

/** A logger that drops everything: the node is silent by default. */
export const silentLogger: Logger = {
  debug: discard,
  info: discard,
  warn: discard,
  error: discard,
};
