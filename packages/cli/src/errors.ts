/** A bad flag, variable or config value: one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly code = "SB_ERR_USAGE";
}
