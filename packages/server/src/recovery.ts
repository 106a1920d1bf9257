import type { Position } from "@switchboard/protocol";

import type { Publication, ReadOutcome } from "./engine.js";

/** Most bytes of `data` a subscribe reply recovers. */
export const RECOVERY_MAX_BYTES = 1024 * 1024;

/** Whether a subscriber's gap can be filled, and with what. */
export interface Recovery {
  readonly recovered: boolean;
  readonly publications: readonly Publication[];
}

const NOT_RECOVERED: Recovery = { recovered: false, publications: [] };

/**
 * Decides recovery from one read: true if and only if `since` is in the
 * current epoch, at most the top, and every message above it was read
 * from what is stored, within the count and byte limits.
 */
export function recover(
  since: Position,
  read: ReadOutcome,
  limits: { readonly recoveryMaxPublications: number },
): Recovery {
  if (since.epoch !== read.epoch || since.offset > read.offset) {
    return NOT_RECOVERED;
  }
  const missing = read.offset - since.offset;
  if (missing === 0) return { recovered: true, publications: [] };
  if (missing > limits.recoveryMaxPublications) return NOT_RECOVERED;

  const { publications } = read;
  if (
    publications.length !== missing ||
    publications[0]?.offset !== since.offset + 1 ||
    publications[missing - 1]?.offset !== read.offset
  ) {
    return NOT_RECOVERED;
  }
  let bytes = 0;
  for (const publication of publications) {
    bytes += Buffer.byteLength(publication.data);
    if (bytes > RECOVERY_MAX_BYTES) return NOT_RECOVERED;
  }
  return { recovered: true, publications };
}
