import type { PresenceMember } from "@switchboard/protocol";

/**
 * The member list of one channel, kept from the snapshot of the last
 * (re)subscribe and updated by `join` and `leave`. Entries are per
 * connection (`client`); `join` and `leave` are per user: a join is a
 * user's first connection in, a leave its last one out.
 */
export class MemberList {
  private entries = new Map<string, PresenceMember>();

  /** The members, in the order they were listed or joined. */
  get members(): readonly PresenceMember[] {
    return [...this.entries.values()];
  }

  /** Replaces the list with a snapshot, after every (re)subscribe. */
  replace(members: readonly PresenceMember[]): void {
    this.entries = new Map(members.map((m) => [m.client, m]));
  }

  /** Adds a user's connection; false if it was already listed. */
  join(user: string, client: string): boolean {
    if (this.entries.has(client)) return false;
    this.entries.set(client, { user, client });
    return true;
  }

  /** Removes every entry of `user`, whose last connection left. */
  leave(user: string): boolean {
    let removed = false;
    for (const [client, member] of this.entries) {
      if (member.user !== user) continue;
      this.entries.delete(client);
      removed = true;
    }
    return removed;
  }

  /** Forgets every member. */
  clear(): void {
    this.entries.clear();
  }
}
