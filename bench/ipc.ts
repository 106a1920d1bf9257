/**
 * Requests and replies between the bench and its server and client
 * processes, over Node's IPC channel. Each request carries an `id`; the
 * child answers with the same `id` and either `result` or `error`.
 * Messages without `id` are notices (a round delivered, a client closed).
 */
import { fork, type ChildProcess } from "node:child_process";

/** The TypeScript loader, resolved here so any working directory works. */
const TSX = import.meta.resolve("tsx");

/** A request to a child: its `type` names the handler. */
export interface Request {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** A notice a child sends unasked. */
export interface Notice {
  readonly notice: string;
  readonly [field: string]: unknown;
}

interface Reply {
  readonly id: number;
  readonly result?: unknown;
  readonly error?: string;
}

/** Raised when a child answers a request with an error. */
export class ChildError extends Error {
  override readonly name = "ChildError";
  readonly code = "SB_BENCH_CHILD";
}

/** A child process of the bench that answers requests. */
export class Child {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  private readonly listeners = new Set<(notice: Notice) => void>();
  private exited = false;

  constructor(
    readonly label: string,
    readonly process: ChildProcess,
  ) {
    process.on("message", (message: Reply | Notice) => {
      if ("notice" in message) {
        for (const listener of this.listeners) listener(message);
        return;
      }
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error !== undefined) {
        waiter.reject(new ChildError(`${label}: ${message.error}`));
      } else {
        waiter.resolve(message.result);
      }
    });
    process.on("exit", (code, signal) => {
      this.exited = true;
      const reason = new ChildError(
        `${label} exited (${signal ?? `status ${code}`})`,
      );
      for (const waiter of this.pending.values()) waiter.reject(reason);
      this.pending.clear();
    });
  }

  /**
   * Starts `script` (a .ts file beside this one) as a child process, with
   * extra Node flags in `flags`.
   */
  static start(
    label: string,
    script: string,
    args: string[] = [],
    flags: string[] = [],
  ): Child {
    const child = fork(new URL(script, import.meta.url).pathname, args, {
      execArgv: ["--import", TSX, "--expose-gc", ...flags],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    return new Child(label, child);
  }

  /** The process id, for reading its CPU time from outside. */
  get pid(): number {
    return this.process.pid ?? 0;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Sends a request and resolves with the child's result. */
  request<T>(request: Request): Promise<T> {
    if (this.exited || !this.process.connected) {
      return Promise.reject(new ChildError(`${this.label} is not running`));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.process.send({ ...request, id }, (error) => {
        if (!error) return;
        this.pending.delete(id);
        reject(new ChildError(`${this.label}: ${error.message}`));
      });
    });
  }

  /** Sends a request that gets no reply. */
  tell(request: Request): void {
    // The channel closes before the exit is seen when the child was
    // signalled with the bench (a Ctrl-C): then the request is dropped.
    if (this.process.connected) this.process.send(request, () => undefined);
  }

  /** Calls `listener` for each notice; returns a function that stops it. */
  onNotice(listener: (notice: Notice) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ends the process with `signal` and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) =>
      this.process.once("exit", () => resolve()),
    );
    this.process.kill(signal);
    await exited;
  }
}

type Handler = (request: Request) => unknown;

/**
 * Serves requests from the parent: each `type` goes to its handler, whose
 * return value (or promise) is the reply. A request without `id` gets none.
 */
export function serve(handlers: Record<string, Handler>): void {
  process.on("message", async (message: Request & { id?: number }) => {
    const handler = handlers[message.type];
    const id = message.id;
    try {
      if (!handler) throw new Error(`unknown request "${message.type}"`);
      const result = await handler(message);
      if (id !== undefined) process.send!({ id, result: result ?? null });
    } catch (error) {
      const reason = String((error as Error).message);
      if (id !== undefined) process.send!({ id, error: reason });
      else process.stderr.write(`${message.type}: ${reason}\n`);
    }
  });
  // The bench ends its children; losing it must not leave them behind.
  process.on("disconnect", () => process.exit(0));
}

/** Sends a notice to the parent. */
export function notify(notice: Notice): void {
  process.send?.(notice);
}
