import { describe, expect, it } from "vitest";

import { MemberList } from "./members.js";

describe("member list", () => {
  it("members - a snapshot replaces the list", () => {
    const list = new MemberList();
    list.join("old", "c0");
    list.replace([
      { user: "ann", client: "c1" },
      { user: "ben", client: "c2", info: { name: "Ben" } },
    ]);
    expect(list.members).toEqual([
      { user: "ann", client: "c1" },
      { user: "ben", client: "c2", info: { name: "Ben" } },
    ]);
  });

  it("members - join adds a connection once", () => {
    const list = new MemberList();
    expect(list.join("ann", "c1")).toBe(true);
    expect(list.join("ann", "c1")).toBe(false);
    expect(list.members).toEqual([{ user: "ann", client: "c1" }]);
  });

  it("members - leave removes every connection of the user", () => {
    const list = new MemberList();
    list.replace([
      { user: "ann", client: "c1" },
      { user: "ann", client: "c2" },
      { user: "ben", client: "c3" },
    ]);
    expect(list.leave("ann")).toBe(true);
    expect(list.leave("ann")).toBe(false);
    expect(list.members).toEqual([{ user: "ben", client: "c3" }]);
  });
});
