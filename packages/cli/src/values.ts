import type { OptionKind } from "@switchboard/server";

import { UsageError } from "./errors.js";

const DURATION_UNITS: Record<string, number> = {
  "": 1,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses the text of an option as its kind: integers as written, durations
 * as milliseconds or with a unit (`25s`, `5m`), sizes as bytes or with a
 * unit (`64KiB`, `1MiB`), booleans as true/false/1/0, lists comma-separated.
 */
export function parseValue(
  kind: OptionKind,
  text: string,
  where: string,
): unknown {
  switch (kind) {
    case "string":
      return text;
    case "list":
      return text
        .split(",")
        .map((item) => item.trim())
        .filter(Boolean);
    case "boolean":
      if (["true", "1", "yes"].includes(text)) return true;
      if (["false", "0", "no"].includes(text)) return false;
      throw new UsageError(`${where} must be true or false, got "${text}"`);
    case "integer":
      return withUnit(text, { "": 1 }, where, "an integer");
    case "duration":
      return withUnit(text, DURATION_UNITS, where, "a duration like 25s");
    case "bytes":
      return withUnit(text, BYTE_UNITS, where, "a size like 64KiB");
  }
}

function withUnit(
  text: string,
  units: Record<string, number>,
  where: string,
  expected: string,
): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const factor = match ? units[(match[2] ?? "").toLowerCase()] : undefined;
  if (!match || factor === undefined) {
    throw new UsageError(`${where} must be ${expected}, got "${text}"`);
  }
  const value = Number(match[1]) * factor;
  if (!Number.isInteger(value)) {
    throw new UsageError(`${where} must be a whole number, got "${text}"`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${where} is out of range: "${text}"`);
  }
  return value;
}
