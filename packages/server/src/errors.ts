/** Stable codes of the errors the server package throws. */
export type SwitchboardErrorCode =
  "SB_ERR_CONFIG" | "SB_ERR_INSECURE" | "SB_ERR_CLOSED";

/** Base class of the server's errors: each carries a stable `code`. */
export class SwitchboardError extends Error {
  override readonly name: string = "SwitchboardError";

  constructor(
    readonly code: SwitchboardErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** An option has a value the node cannot run with. */
export class ConfigError extends SwitchboardError {
  override readonly name = "ConfigError";

  constructor(message: string, options?: ErrorOptions) {
    super("SB_ERR_CONFIG", message, options);
  }
}

/**
 * Open mode (no token verification) on an address that is not loopback,
 * without `insecure`.
 */
export class InsecureError extends SwitchboardError {
  override readonly name = "InsecureError";

  constructor(message: string) {
    super("SB_ERR_INSECURE", message);
  }
}
