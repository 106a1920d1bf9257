import { TokenError, UnauthorizedError } from "./errors.js";

/**
 * Returns a connection token. It may throw `UnauthorizedError` to stop the
 * client for good (e.g. the user logged out); any other error is reported
 * and retried with backoff. An empty string connects anonymously.
 */
export type TokenFunction = () => string | Promise<string>;

/** What a 4419 with a fixed string token tells the app. */
export const STRING_TOKEN_EXPIRED =
  "token expired and the token option is a string; " +
  "pass a function to get fresh tokens";

/**
 * Where tokens come from: the `token` option. A string is used as long as
 * the server takes it; a function is called for the first connect, for
 * each in-band refresh, and again whenever a token expired.
 */
export class TokenProvider {
  private cached: string | undefined;
  private expired = false;

  /**
   * @param source the `token` option
   * @param timeoutMs how long the token function may take: one that never
   *   settles must not hold the client in `connecting`
   */
  constructor(
    private readonly source: string | TokenFunction | undefined,
    private readonly timeoutMs: number,
  ) {}

  /** Whether a fresh token can be had once the current one expired. */
  get renewable(): boolean {
    return typeof this.source === "function";
  }

  /** The token for the next connect: the cached one unless invalidated. */
  async current(): Promise<string | undefined> {
    if (typeof this.source !== "function") {
      if (this.expired) throw new UnauthorizedError(STRING_TOKEN_EXPIRED);
      return this.source;
    }
    return this.cached ?? (await this.fetch());
  }

  /** Calls the token function for a new token and caches it. */
  async fetch(): Promise<string | undefined> {
    const source = this.source;
    if (typeof source !== "function") return source;

    let token: unknown;
    try {
      token = await this.withTimeout(Promise.resolve().then(source));
    } catch (error) {
      if (error instanceof UnauthorizedError) throw error;
      if (error instanceof TokenError) throw error;
      throw new TokenError("token function failed", { cause: error });
    }
    if (typeof token !== "string") {
      throw new TokenError(
        `token function must return a string, got ${typeof token}`,
      );
    }
    this.cached = token;
    return token;
  }

  /** The token is expired or due: never send it again. */
  invalidate(): void {
    this.cached = undefined;
    this.expired = true;
  }

  private withTimeout<T>(promise: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TokenError(
              `token function timed out after ${this.timeoutMs} ms`,
            ),
          ),
        this.timeoutMs,
      );
    });
    return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
  }
}
