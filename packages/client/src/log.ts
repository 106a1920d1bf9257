/** Fields attached to a debug line, e.g. `{attempt: 3, code: 4429}`. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Receives the client's debug lines when the `debug` option is set. */
export type DebugLogger = (message: string, fields?: LogFields) => void;

/** The client's internal logger; a no-op unless `debug` is set. */
export type Log = DebugLogger;

const silent: Log = () => {};

/**
 * The logger for a `debug` option: the app's function, `console.debug` for
 * `true`, or nothing at all.
 */
export function createLog(debug: boolean | DebugLogger | undefined): Log {
  if (typeof debug === "function") return debug;
  if (debug !== true) return silent;
  return (message, fields) => {
    // The one place the SDK prints, and only when the app asked for it.
    console.debug(`switchboard: ${message}`, fields ?? {});
  };
}
