import { describe, expect, it, vi } from "vitest";

import { Emitter } from "./emitter.js";

interface Events {
  ping: number;
  name: string;
}

class Box extends Emitter<Events> {
  fire<K extends keyof Events>(event: K, payload: Events[K]): void {
    this.emit(event, payload);
  }
}

describe("emitter", () => {
  it("emitter - calls listeners in order with the payload", () => {
    const box = new Box();
    const calls: string[] = [];
    box.on("ping", (n) => calls.push(`a${n}`));
    box.on("ping", (n) => calls.push(`b${n}`));
    box.on("name", (s) => calls.push(s));
    box.fire("ping", 1);
    expect(calls).toEqual(["a1", "b1"]);
  });

  it("emitter - on returns a function that removes the listener", () => {
    const box = new Box();
    const listener = vi.fn();
    const off = box.on("ping", listener);
    off();
    box.fire("ping", 1);
    expect(listener).not.toHaveBeenCalled();
  });

  it("emitter - once fires a single time", () => {
    const box = new Box();
    const listener = vi.fn();
    box.once("ping", listener);
    box.fire("ping", 1);
    box.fire("ping", 2);
    expect(listener).toHaveBeenCalledExactlyOnceWith(1);
  });

  it("emitter - a throwing listener does not stop the others", async () => {
    const box = new Box();
    const after = vi.fn();
    const failure = new Error("listener bug");
    box.on("ping", () => {
      throw failure;
    });
    box.on("ping", after);

    const reported = new Promise((resolve) => {
      const original = globalThis.queueMicrotask;
      globalThis.queueMicrotask = (callback) => {
        globalThis.queueMicrotask = original;
        try {
          callback();
        } catch (error) {
          resolve(error);
        }
      };
    });
    box.fire("ping", 1);
    expect(after).toHaveBeenCalledOnce();
    expect(await reported).toBe(failure);
  });
});
