/** A hook was used outside a `SwitchboardProvider`. */
export class MissingProviderError extends Error {
  override readonly name = "MissingProviderError";
  /** Stable code, for branching without reading the message. */
  readonly code = "SB_ERR_NO_PROVIDER";

  constructor(hook: string) {
    super(`${hook} must be used inside a <SwitchboardProvider>`);
  }
}
