import { readFileSync } from "node:fs";
import type { ParseArgsConfig } from "node:util";

import { DEFAULTS, OPTION_SPECS, type NodeOptions } from "@switchboard/server";

import { UsageError } from "./errors.js";
import { parseValue } from "./values.js";

/** Settings of the `start` command beyond the node's own options. */
export interface StartSettings {
  readonly node: NodeOptions;
  readonly logLevel: string;
  readonly workers: number;
}

/** Flags of `start` that are not node options. */
const EXTRA_SPECS = [
  { name: "config", description: "JSON config file" },
  {
    name: "logLevel",
    description: "debug, info, warn, error or silent (default info)",
  },
  { name: "workers", description: "node processes (default 1)" },
] as const;

const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"];

/** `tokenSecret` -> `token-secret`. */
export function flagName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `tokenSecret` -> `SWITCHBOARD_TOKEN_SECRET`. */
export function envName(name: string): string {
  return `SWITCHBOARD_${flagName(name).replace(/-/g, "_").toUpperCase()}`;
}

/** The `parseArgs` options of `start`: one flag per node option. */
export function startFlags(): ParseArgsConfig["options"] {
  const flags: NonNullable<ParseArgsConfig["options"]> = {
    help: { type: "boolean", short: "h" },
  };
  for (const spec of OPTION_SPECS) {
    flags[flagName(spec.name)] = {
      type: spec.kind === "boolean" ? "boolean" : "string",
    };
  }
  for (const spec of EXTRA_SPECS) {
    flags[flagName(spec.name)] = { type: "string" };
  }
  return flags;
}

/**
 * Builds the settings of `start`: each option from its flag, else its
 * `SWITCHBOARD_*` variable, else the config file, else the default.
 */
export function loadSettings(
  flags: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): StartSettings {
  const configPath = text(flags.config) ?? env.SWITCHBOARD_CONFIG;
  const file = configPath === undefined ? {} : readConfigFile(configPath);
  const node: Record<string, unknown> = {};

  for (const spec of OPTION_SPECS) {
    const flag = flags[flagName(spec.name)];
    const variable = env[envName(spec.name)];
    if (flag !== undefined) {
      node[spec.name] =
        typeof flag === "boolean"
          ? flag
          : parseValue(spec.kind, flag, `--${flagName(spec.name)}`);
    } else if (variable !== undefined && variable !== "") {
      node[spec.name] = parseValue(spec.kind, variable, envName(spec.name));
    } else if (spec.name in file) {
      node[spec.name] = fileValue(spec.kind, file[spec.name], spec.name);
    }
  }
  if (file.namespaces !== undefined) {
    node.namespaces = namespaces(file.namespaces, configPath ?? "");
  }

  const logLevel = String(
    text(flags["log-level"]) ??
      (env.SWITCHBOARD_LOG_LEVEL || undefined) ??
      file.logLevel ??
      "info",
  );
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `log level must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`,
    );
  }
  const workersText =
    text(flags.workers) ??
    (env.SWITCHBOARD_WORKERS || undefined) ??
    file.workers;
  const workers =
    workersText === undefined
      ? 1
      : (parseValue("integer", String(workersText), "--workers") as number);
  if (workers < 1) {
    throw new UsageError(`--workers must be at least 1, got ${workers}`);
  }
  if (workers > 1 && node.engine !== "redis") {
    throw new UsageError("--workers above 1 needs --engine redis");
  }
  return { node: node as NodeOptions, logLevel, workers };
}

/** Namespace durations in the config file may carry units too. */
function namespaces(value: unknown, path: string): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`config file ${path}: namespaces must be an object`);
  }
  return Object.fromEntries(
    Object.entries(value).map(([name, options]) => {
      if (
        typeof options !== "object" ||
        options === null ||
        Array.isArray(options)
      ) {
        return [name, options];
      }
      const parsed = { ...(options as Record<string, unknown>) };
      for (const key of ["historyTtl", "idempotencyWindow"]) {
        if (typeof parsed[key] === "string") {
          parsed[key] = parseValue(
            "duration",
            parsed[key] as string,
            `config namespaces.${name}.${key}`,
          );
        }
      }
      return [name, parsed];
    }),
  );
}

function text(value: string | boolean | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function readConfigFile(path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? "no such file"
        : "not valid JSON";
    throw new UsageError(`config file ${path}: ${reason}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`config file ${path}: must hold a JSON object`);
  }
  const known = new Set<string>([
    ...OPTION_SPECS.map((spec) => spec.name),
    ...EXTRA_SPECS.map((spec) => spec.name),
    "namespaces",
  ]);
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) {
      throw new UsageError(`config file ${path}: unknown option "${key}"`);
    }
  }
  return parsed as Record<string, unknown>;
}

function fileValue(
  kind: (typeof OPTION_SPECS)[number]["kind"],
  value: unknown,
  name: string,
): unknown {
  if (typeof value === "string" && kind !== "string") {
    return parseValue(kind, value, `config ${name}`);
  }
  return value;
}

/** The option lines of `start --help`. */
export function optionHelp(): string {
  const defaults = DEFAULTS as Record<string, unknown>;
  const rows = OPTION_SPECS.map((spec) => {
    const fallback = defaults[spec.name];
    const shown =
      spec.name === "maxConnections"
        ? "open-file limit - 1024, or half a limit of 2048 or less"
        : Array.isArray(fallback)
          ? fallback.join(",") || "none"
          : fallback;
    const value = spec.kind === "boolean" ? "" : ` <${spec.kind}>`;
    return [
      `  --${flagName(spec.name)}${value}`,
      `      ${spec.description}` +
        (shown === undefined ? "" : ` (default ${String(shown)})`),
      `      env ${envName(spec.name)}, config key "${spec.name}"`,
    ].join("\n");
  });
  const extras = EXTRA_SPECS.map(
    (spec) =>
      `  --${flagName(spec.name)} <value>\n      ${spec.description}\n` +
      `      env ${envName(spec.name)}`,
  );
  return [...extras, ...rows].join("\n");
}
