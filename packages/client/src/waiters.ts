import { TimeoutError } from "./errors.js";

interface Waiter {
  readonly onOpen: boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * Everything that waits on the client's connection: calls waiting for it to
 * open, retries sleeping between attempts, requests racing their deadline.
 * Each wait ends in time with a `TimeoutError`, or with a `ClosedError` when
 * the client closes, so no promise is left hanging.
 */
export class Waiters {
  private isOpen = false;
  private failure: Error | undefined;
  private readonly waiting = new Set<Waiter>();

  /** The connection is usable: release everyone waiting for it. */
  open(): void {
    this.isOpen = true;
    for (const waiter of [...this.waiting]) {
      if (waiter.onOpen) waiter.resolve();
    }
  }

  /** The connection is gone; new waits block until the next `open`. */
  shut(): void {
    this.isOpen = false;
  }

  /** The client closed: reject every wait, now and from now on. */
  fail(error: Error): void {
    this.isOpen = false;
    this.failure = error;
    for (const waiter of [...this.waiting]) waiter.reject(error);
  }

  /**
   * Resolves when the connection is usable. Rejects with a `TimeoutError`
   * naming `what` at `deadline` (epoch ms), if one is given.
   */
  opened(what: string, deadline?: number): Promise<void> {
    if (this.isOpen && this.failure === undefined) return Promise.resolve();
    return this.wait(true, what, deadline);
  }

  /**
   * Resolves after `delayMs`. Rejects at once with a `TimeoutError` when
   * that is past `deadline`: retrying later would be too late.
   */
  sleep(delayMs: number, what: string, deadline?: number): Promise<void> {
    if (deadline !== undefined && Date.now() + delayMs >= deadline) {
      return Promise.reject(this.failure ?? timeout(what));
    }
    return this.wait(false, what, Date.now() + delayMs, true);
  }

  /** Settles like `promise`, or rejects at `deadline` or on close. */
  race<T>(promise: Promise<T>, what: string, deadline: number): Promise<T> {
    let result: T;
    const done = promise.then((value) => {
      result = value;
    });
    const settled = this.wait(false, what, deadline, false, done);
    return settled.then(() => result);
  }

  private wait(
    onOpen: boolean,
    what: string,
    deadline: number | undefined,
    resolveAtDeadline = false,
    until?: Promise<void>,
  ): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);

    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const end = (): void => {
        clearTimeout(timer);
        this.waiting.delete(waiter);
      };
      const waiter: Waiter = {
        onOpen,
        resolve: () => {
          end();
          resolve();
        },
        reject: (error) => {
          end();
          reject(error);
        },
      };

      this.waiting.add(waiter);
      if (deadline !== undefined) {
        const delay = Math.max(0, deadline - Date.now());
        timer = setTimeout(
          () =>
            resolveAtDeadline ? waiter.resolve() : waiter.reject(timeout(what)),
          delay,
        );
      }
      until?.then(waiter.resolve, waiter.reject);
    });
  }
}

function timeout(what: string): TimeoutError {
  return new TimeoutError(`${what} timed out`);
}
