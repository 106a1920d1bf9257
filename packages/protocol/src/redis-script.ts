import { sha1 } from "@noble/hashes/legacy.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";

/** A Lua script and its SHA-1 in hex, as EVALSHA names it. */
export interface ScriptSource {
  readonly text: string;
  readonly sha: string;
}

/** The source of the script `text`, with its SHA-1. */
export function scriptSource(text: string): ScriptSource {
  const sha = bytesToHex(sha1(utf8ToBytes(text)));
  return { text, sha };
}

/**
 * Runs a script by its SHA with `send`, and sends it whole once when Redis
 * answers NOSCRIPT (a restarted server, a master that never ran it).
 */
export async function evalScript(
  send: (command: string[]) => Promise<unknown>,
  script: ScriptSource,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  const rest = [String(keys.length), ...keys, ...args];
  try {
    return await send(["EVALSHA", script.sha, ...rest]);
  } catch (error) {
    if (!String((error as Error).message).startsWith("NOSCRIPT")) throw error;
    return send(["EVAL", script.text, ...rest]);
  }
}
