import { Backoff } from "./backoff.js";
import type { Connection } from "./connection.js";
import {
  ConnectionLostError,
  ServerError,
  UnauthorizedError,
  type SwitchboardClientError,
} from "./errors.js";
import type { Log } from "./log.js";
import { TOKEN_REFRESH_RATIO } from "./options.js";

/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
import type { TokenProvider } from "./token.js";

/** What the refresher reports to the client. */
export interface RefreshHandlers {
  /** The token function threw `UnauthorizedError`: stop for good. */
  stop(error: UnauthorizedError): void;
  /** A refresh failed; it is retried while the connection lasts. */
  error(error: SwitchboardClientError): void;
}

/**
 * Replaces a connection's token in-band with a `refresh` request at 80% of
 * its `expiresIn`, before the server closes with 4419. Without a token
 * function there is nothing to refresh with: the token then expires, and
 * the close says so.
 */
export class TokenRefresher {
  private connection: Connection | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private dueAt: number | undefined;
  private readonly retry: Backoff;

  constructor(
    private readonly tokens: TokenProvider,
    private readonly log: Log,
    private readonly handlers: RefreshHandlers,
    minDelayMs: number,
    maxDelayMs: number,
  ) {
    this.retry = new Backoff(minDelayMs, maxDelayMs);
  }

  /**
   * Whether a refresh came due and did not happen: the token may have
   * expired since, so the next connect must not offer it.
   */
  get overdue(): boolean {
    return this.dueAt !== undefined && Date.now() >= this.dueAt;
  }

  /** Watches `connection`, whose token expires in `expiresIn` ms. */
  start(connection: Connection, expiresIn: number | undefined): void {
    this.connection = connection;
    this.retry.reset();
    this.schedule(expiresIn);
  }

  /** The connection is gone; a due refresh stays `overdue`. */
  stop(): void {
    clearTimeout(this.timer);
    this.connection = undefined;
  }

  /** Forgets the due time: the next token is a fresh one. */
  forget(): void {
    this.dueAt = undefined;
  }

  private schedule(expiresIn: number | undefined): void {
    clearTimeout(this.timer);
    this.dueAt = undefined;
    if (typeof expiresIn !== "number" || !Number.isFinite(expiresIn)) return;

    const delay = Math.max(0, expiresIn * TOKEN_REFRESH_RATIO);
    this.dueAt = Date.now() + delay;
    if (!this.tokens.renewable) return;
    // setTimeout fires at once past 2^31-1 ms: refresh early instead.
    this.timer = setTimeout(
      () => void this.refresh(),
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  private async refresh(): Promise<void> {
    const connection = this.connection;
    if (connection === undefined) return;

    let token: string | undefined;
    try {
      token = await this.tokens.fetch();
    } catch (error) {
      if (connection !== this.connection) return;
      if (error instanceof UnauthorizedError) {
        this.handlers.stop(error);
        return;
      }
      this.handlers.error(error as SwitchboardClientError);
      this.retryLater();
      return;
    }
    if (connection !== this.connection || !connection.usable || !token) {
      return;
    }

    this.log("refreshing the token");
    connection.request<"refresh">({ type: "refresh", token }, (outcome) => {
      if (connection !== this.connection) return;
      if (outcome.ok) {
        this.retry.reset();
        this.schedule(outcome.result?.expiresIn);
        return;
      }

      const error = outcome.error;
      if (error instanceof ConnectionLostError) return;
      this.handlers.error(error);
      if (error instanceof ServerError && error.temporary) this.retryLater();
    });
  }

  private retryLater(): void {
    this.timer = setTimeout(() => void this.refresh(), this.retry.next());
  }
}
