/** A function called with an event's payload. */
export type Listener<T> = (payload: T) => void;

/**
 * A small typed event emitter. `Events` maps each event name to the type of
 * its payload.
 *
 * A listener that throws does not stop the others, nor the client: the
 * error is rethrown from a microtask, the way `EventTarget` reports it, so
 * it surfaces as an uncaught error instead of corrupting the SDK's state.
 */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds `listener` for `event`; returns a function that removes it. */
  on<K extends keyof Events>(
    event: K,
    listener: Listener<Events[K]>,
  ): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Like `on`, but the listener is removed after its first call. */
  once<K extends keyof Events>(
    event: K,
    listener: Listener<Events[K]>,
  ): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** Removes `listener` from `event`; does nothing if it was not added. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** Calls every listener of `event` with `payload`, in the order added. */
  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;

    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Removes every listener of every event. */
  protected removeAllListeners(): void {
    this.listeners.clear();
  }
}
