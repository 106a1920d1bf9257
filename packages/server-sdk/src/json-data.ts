import { InvalidArgumentError } from "./errors.js";

/**
 * The JSON text of a message's `data`. Throws an `InvalidArgumentError`,
 * before anything is sent, for what JSON cannot carry as it is: a
 * `BigInt`, a function, a symbol, `undefined`, a number that is not
 * finite, an object that is not plain (a `Date`, a `Map`), or a cycle.
 * `JSON.stringify` would throw for some and silently drop or change the
 * others.
 */
export function jsonText(data: unknown): string {
  if (data === undefined) throw new InvalidArgumentError("data is required");
  check(data, "data", []);
  return JSON.stringify(data);
}

function check(value: unknown, path: string, parents: object[]): void {
  if (value === null) return;
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (Number.isFinite(value)) return;
      throw new InvalidArgumentError(`${path} is ${value}, not a JSON number`);
    case "object":
      break;
    default:
      throw new InvalidArgumentError(
        `${path} is ${kind(value)}, not a JSON value`,
      );
  }
  if (parents.includes(value)) {
    throw new InvalidArgumentError(`${path} refers back to itself`);
  }
  parents.push(value);
  if (Array.isArray(value)) {
    value.forEach((item, index) => check(item, `${path}[${index}]`, parents));
  } else {
    const prototype = Object.getPrototypeOf(value) as unknown;
    if (prototype !== Object.prototype && prototype !== null) {
      throw new InvalidArgumentError(`${path} is not a plain object`);
    }
    for (const [key, item] of Object.entries(value)) {
      check(item, `${path}.${key}`, parents);
    }
  }
  parents.pop();
}

/** How an error names a value JSON cannot hold: "undefined", "a function". */
function kind(value: unknown): string {
  return value === undefined ? "undefined" : `a ${typeof value}`;
}
