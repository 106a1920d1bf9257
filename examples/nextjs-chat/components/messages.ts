import type { Message } from "@switchboard/client";

/**
 * Longest line, in characters: what the composer and `/announce` accept.
 * The node cannot know this app's limit, so a longer line published by
 * another client is cut when shown.
 */
export const MAX_TEXT = 500;

/** A chat line as the room shows it. */
export interface ChatLine {
  readonly key: string;
  readonly epoch: string;
  readonly offset: number;
  readonly text: string;
  readonly author: string;
  /** Published by the server (route handler, job), not by a user. */
  readonly notice: boolean;
  /** The text was over `MAX_TEXT` and is shown cut. */
  readonly cut: boolean;
  /** The sender's id for its own pending copy. */
  readonly id: string | undefined;
}

/** A message's chat line, or undefined for data of another shape. */
export function toLine(message: Message): ChatLine | undefined {
  const data = message.data as Record<string, unknown> | null;
  if (typeof data !== "object" || data === null) return undefined;
  if (typeof data.text !== "string") return undefined;
  // Only the server publishes without a publisher: a user's message that
  // claims to be a notice, or to be by someone else, shows its sender.
  const publisher = message.publisher?.user;
  const notice = publisher === undefined && data.notice === true;
  const by = typeof data.by === "string" ? data.by : "server";
  return {
    key: `${message.epoch}:${message.offset}`,
    epoch: message.epoch,
    offset: message.offset,
    text: data.text.slice(0, MAX_TEXT),
    author: publisher ?? (notice ? by : "someone"),
    notice,
    cut: data.text.length > MAX_TEXT,
    id: typeof data.id === "string" ? data.id : undefined,
  };
}

/**
 * Adds lines to a list kept in channel order, once each: live messages and
 * a history read can overlap, and either may come first.
 */
export function mergeLines(
  list: readonly ChatLine[],
  added: readonly ChatLine[],
): ChatLine[] {
  const byKey = new Map(list.map((line) => [line.key, line]));
  for (const line of added) byKey.set(line.key, line);
  const epochs: string[] = [];
  for (const line of byKey.values()) {
    if (!epochs.includes(line.epoch)) epochs.push(line.epoch);
  }
  return [...byKey.values()].sort(
    (a, b) =>
      epochs.indexOf(a.epoch) - epochs.indexOf(b.epoch) || a.offset - b.offset,
  );
}
