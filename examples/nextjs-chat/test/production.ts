import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { SwitchboardClient } from "@switchboard/client";
import { createNode } from "@switchboard/server";
import { SwitchboardApi } from "@switchboard/server-sdk";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  buildExample,
  launchBrowser,
  memberNames,
  messageTexts,
  openFiles,
  openRoom,
  rawUpgradeAnswer,
  send,
  signedIn,
  startApp,
  waitUntil,
  Wire,
  type App,
} from "./harness.js";

const SCREENSHOTS = fileURLToPath(new URL("../../../docs/", import.meta.url));
const SPY = fileURLToPath(new URL("./websocket-spy.mjs", import.meta.url));

/** Registers the tests that run the example built for production. */
export function productionTests(): void {
  describe("nextjs-chat built for production", () => {
    let app: App;
    let browser: Browser;
    let spyDir: string;
    let spyFile: string;

    beforeAll(async () => {
      await buildExample();
      spyDir = await mkdtemp(join(tmpdir(), "sb-spy-"));
      spyFile = join(spyDir, "constructed");
      app = await startApp({
        preload: SPY,
        env: {
          WEBSOCKET_SPY_FILE: spyFile,
          // Short-lived tokens: every page refreshes its token in-band
          // several times during the run.
          SWITCHBOARD_TOKEN_TTL_MS: "5000",
          SWITCHBOARD_HEARTBEAT: "2000",
          SWITCHBOARD_PONG_TIMEOUT: "2000",
        },
      });
      browser = await launchBrowser();
    }, 240_000);

    afterAll(async () => {
      await browser?.close();
      await app?.stop();
      if (spyDir) await rm(spyDir, { recursive: true, force: true });
    });

    it("shows a message typed in one context in the other, once", async () => {
      const alice = await signedIn(browser, app, "alice");
      const bob = await signedIn(browser, app, "bob");
      try {
        const a = await alice.newPage();
        const b = await bob.newPage();
        await openRoom(a, app, "once");
        await openRoom(b, app, "once");
        await waitUntil(
          async () => (await memberNames(a)).length === 2,
          5_000,
          "both members listed",
        );

        await send(a, "hello from alice");
        await b.getByText("hello from alice").waitFor();
        await send(b, "hi alice");
        await a.getByText("hi alice").waitFor();
        await new Promise((resolve) => setTimeout(resolve, 500));

        expect(await messageTexts(b)).toEqual(["hello from alice", "hi alice"]);
        expect(await messageTexts(a)).toEqual(["hello from alice", "hi alice"]);
        await a.getByLabel("Message").pressSequentially("on my way");
        await b
          .getByTestId("typing")
          .filter({ hasText: "alice is typing" })
          .waitFor();
        await b.screenshot({ path: join(SCREENSHOTS, "nextjs-chat.png") });
        await b.setViewportSize({ width: 390, height: 740 });
        await b.screenshot({
          path: join(SCREENSHOTS, "nextjs-chat-phone.png"),
        });
      } finally {
        await alice.close();
        await bob.close();
      }
    });

    it("delivers 5 messages sent while offline, in order, once", async () => {
      const alice = await signedIn(browser, app, "alice");
      const bob = await signedIn(browser, app, "bob");
      try {
        const a = await alice.newPage();
        const b = await bob.newPage();
        await openRoom(a, app, "offline");
        await openRoom(b, app, "offline");
        await b.evaluate(
          () => ((window as unknown as { marker: number }).marker = 1),
        );

        await bob.setOffline(true);
        const offlineAt = Date.now();
        await b
          .getByTestId("connection")
          .filter({ hasNotText: "Live" })
          .waitFor({ timeout: 8_000 });
        for (let i = 1; i <= 5; i += 1) await send(a, `while away ${i}`);
        await send(b, "queued by bob");
        await b
          .getByTestId("pending")
          .filter({ hasText: "queued by bob" })
          .waitFor();
        await waitUntil(
          async () => (await messageTexts(a)).length === 5,
          5_000,
          "sent",
        );
        expect(await messageTexts(b)).toEqual([]);
        await new Promise((resolve) =>
          setTimeout(resolve, Math.max(0, 10_000 - (Date.now() - offlineAt))),
        );

        await bob.setOffline(false);
        const expected = [1, 2, 3, 4, 5].map((i) => `while away ${i}`);
        await waitUntil(
          async () => (await messageTexts(b)).length >= 6,
          15_000,
          "missed messages after reconnect",
        );
        await new Promise((resolve) => setTimeout(resolve, 500));
        const seen = await messageTexts(b);
        expect(seen.filter((text) => text.startsWith("while away"))).toEqual(
          expected,
        );
        expect(seen.filter((text) => text === "queued by bob")).toHaveLength(1);
        expect(seen).toHaveLength(6);
        expect(await b.getByTestId("pending").count()).toBe(0);
        await a.getByText("queued by bob").waitFor();
        expect(
          (await messageTexts(a)).filter((text) => text === "queued by bob"),
        ).toHaveLength(1);
        expect(
          await b.evaluate(
            () => (window as unknown as { marker?: number }).marker,
          ),
        ).toBe(1);
      } finally {
        await alice.close();
        await bob.close();
      }
    });

    it("serves several tabs of one user, listed once", async () => {
      const alice = await signedIn(browser, app, "alice");
      const bob = await signedIn(browser, app, "bob");
      try {
        const tabs = [await alice.newPage(), await alice.newPage()];
        const b = await bob.newPage();
        for (const page of [...tabs, b]) await openRoom(page, app, "tabs");
        await waitUntil(
          async () => (await memberNames(b)).join() === "alice,bob",
          5_000,
          "alice listed once",
        );

        await send(tabs[0]!, "from the first tab");
        await b.getByText("from the first tab").waitFor();
        await send(b, "to both tabs");
        for (const page of [...tabs, b]) {
          await page.getByText("to both tabs").waitFor();
          await page.getByText("from the first tab").waitFor();
          expect(await messageTexts(page)).toEqual([
            "from the first tab",
            "to both tabs",
          ]);
        }
        await tabs[0]!.close();
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        expect(await memberNames(b)).toEqual(["alice", "bob"]);
      } finally {
        await alice.close();
        await bob.close();
      }
    });

    it("drops a member within seconds of its page closing", async () => {
      const alice = await signedIn(browser, app, "alice");
      const bob = await signedIn(browser, app, "bob");
      try {
        const a = await alice.newPage();
        const b = await bob.newPage();
        await openRoom(a, app, "presence");
        await openRoom(b, app, "presence");
        await waitUntil(
          async () => (await memberNames(a)).join() === "alice,bob",
          5_000,
          "both listed",
        );
        expect(await memberNames(b)).toEqual(["alice", "bob"]);

        const closedAt = Date.now();
        await b.close();
        await waitUntil(
          async () => (await memberNames(a)).join() === "alice",
          5_000,
          "bob dropped",
        );
        expect(Date.now() - closedAt).toBeLessThan(5_000);
      } finally {
        await alice.close();
        await bob.close();
      }
    });

    it("renders history on reload, nothing doubled", async () => {
      const alice = await signedIn(browser, app, "alice");
      try {
        const a = await alice.newPage();
        await openRoom(a, app, "history");
        const texts = Array.from({ length: 8 }, (_, i) => `kept ${i + 1}`);
        for (const text of texts) await send(a, text);
        await waitUntil(
          async () => (await messageTexts(a)).length === 8,
          5_000,
          "eight messages",
        );

        for (let round = 0; round < 2; round += 1) {
          await a.reload();
          await a.getByText("kept 8").waitFor();
          await new Promise((resolve) => setTimeout(resolve, 500));
          expect(await messageTexts(a)).toEqual(texts);
        }
      } finally {
        await alice.close();
      }
    });

    it("shows what an edge route publishes with the server SDK", async () => {
      const alice = await signedIn(browser, app, "alice");
      try {
        const a = await alice.newPage();
        await openRoom(a, app, "notices");
        const response = await a.request.post(`${app.base}/announce`, {
          data: { room: "notices", text: "deploy finished" },
        });
        expect(response.status()).toBe(200);
        expect(await response.json()).toMatchObject({ offset: 1 });
        const notice = a
          .locator(".notice")
          .filter({ hasText: "deploy finished" });
        await notice.waitFor();
        expect(await notice.locator(".author").textContent()).toBe("alice");
        expect(await messageTexts(a)).toEqual(["deploy finished"]);
      } finally {
        await alice.close();
      }
    });

    it("refreshes an expiring token, keeping subscriptions", async () => {
      const alice = await signedIn(browser, app, "alice");
      try {
        const a = await alice.newPage();
        const wire = new Wire(a);
        await openRoom(a, app, "refresh");
        await waitUntil(
          () => wire.frames("refresh").length >= 2,
          15_000,
          "two in-band refreshes",
        );
        await send(a, "still here");
        await a.getByText("still here").waitFor();
        expect(wire.sockets).toHaveLength(1);
        expect(wire.frames("connect")).toHaveLength(1);
        expect(wire.frames("subscribe", "chat:refresh")).toHaveLength(1);
      } finally {
        await alice.close();
      }
    });

    it("talks to a separate fleet named by SWITCHBOARD_URL", async () => {
      const secret = "fleet-secret-for-the-test-of-the-separate-mode";
      const fleet = createNode({ port: 0, tokenSecret: secret, apiKey: "k" });
      const { port } = await fleet.listen();
      const alone = await startApp({
        env: {
          SWITCHBOARD_URL: `ws://127.0.0.1:${port}/ws`,
          SWITCHBOARD_API_URL: `http://127.0.0.1:${port}`,
          SWITCHBOARD_API_KEY: "k",
          SWITCHBOARD_TOKEN_SECRET: secret,
        },
      });
      const dana = await signedIn(browser, alone, "dana");
      try {
        const page = await dana.newPage();
        await openRoom(page, alone, "fleet");
        expect(fleet.connectionCount).toBe(1);
        await send(page, "via the fleet");
        await page.getByText("via the fleet").waitFor();
        const notice = await page.request.post(`${alone.base}/announce`, {
          data: { room: "fleet", text: "from the route handler" },
        });
        expect(notice.status()).toBe(200);
        await page.getByText("from the route handler").waitFor();
        const api = new SwitchboardApi({
          url: `http://127.0.0.1:${port}`,
          apiKey: "k",
        });
        const history = await api.history("chat:fleet", { limit: 10 });
        expect(history.publications.map((p) => p.data)).toMatchObject([
          { text: "via the fleet" },
          { text: "from the route handler", notice: true, by: "dana" },
        ]);
        expect(await memberNames(page)).toEqual(["dana"]);
      } finally {
        await dana.close();
        await alone.stop();
        await fleet.close();
      }
    });

    it("answers 404 to upgrades off /ws and keeps no socket", async () => {
      // Next.js attaches its upgrade handling on its first request.
      expect((await fetch(`${app.base}/`)).status).toBe(200);
      const before = openFiles(app.pid);
      const paths = Array.from({ length: 100 }, (_, i) =>
        i % 2 === 0 ? `/_next/x${i}` : `/_next/webpack-hmr?i=${i}`,
      );
      paths.push("/_next/hmr", "/foo");
      const answers = await Promise.all(
        paths.map((path) => rawUpgradeAnswer(app.port, path)),
      );
      expect(answers).toEqual(
        Array(paths.length).fill("HTTP/1.1 404 Not Found"),
      );
      await waitUntil(
        () => openFiles(app.pid) <= before,
        5_000,
        "the server's sockets back to their number before",
      );
    });

    it("sends a sign-in that is not a form back with an error", async () => {
      for (const init of [
        { headers: { "content-type": "application/json" }, body: "{}" },
        {},
      ]) {
        const response = await fetch(`${app.base}/session`, {
          method: "POST",
          redirect: "manual",
          ...init,
        });
        expect(response.status).toBe(303);
        expect(response.headers.get("location")).toBe("/?error=name");
      }
    });

    it("cuts a line over 500 characters; /announce refuses one", async () => {
      const before = await app.connections();
      const alice = await signedIn(browser, app, "alice");
      const response = await fetch(`${app.base}/token`, {
        headers: { cookie: "chat_user=mallory" },
      });
      const { token } = (await response.json()) as { token: string };
      const mallory = new SwitchboardClient({
        url: `${app.base.replace("http", "ws")}/ws`,
        token,
      });
      try {
        const a = await alice.newPage();
        await openRoom(a, app, "long");
        await mallory.connect();
        await mallory.publish("chat:long", { text: "x".repeat(60_000) });
        await a.getByTestId("cut").waitFor();
        expect(await messageTexts(a)).toEqual(["x".repeat(500)]);
        expect(await a.getByTestId("cut").textContent()).toBe(
          "cut at 500 characters",
        );
        const refused = await a.request.post(`${app.base}/announce`, {
          data: { room: "long", text: "y".repeat(501) },
        });
        expect(refused.status()).toBe(400);
      } finally {
        await mallory.close();
        await alice.close();
      }
      // The next test counts the node's connections.
      await waitUntil(
        async () => (await app.connections()) === before,
        5_000,
        "both connections closed",
      );
    });

    it("C20: no WebSocket in server rendering; one on hydration", async () => {
      const before = await app.connections();
      const responses = await Promise.all(
        Array.from({ length: 100 }, async () => {
          const response = await fetch(`${app.base}/room/ssr`, {
            headers: { cookie: "chat_user=carol" },
          });
          return { status: response.status, body: await response.text() };
        }),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(100).fill(200));
      expect(
        responses.filter((r) => r.body.includes("ReferenceError")),
      ).toHaveLength(0);
      expect(responses[0]!.body).toContain("Connecting…");
      expect(await readFile(spyFile, "utf8").catch(() => "")).toBe("");
      expect(app.output()).not.toMatch(/ReferenceError|WebSocket constructed/);
      expect(await app.connections()).toBe(before);

      const carol = await signedIn(browser, app, "carol");
      try {
        const page = await carol.newPage();
        const wire = new Wire(page);
        await openRoom(page, app, "ssr");
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(wire.sockets).toHaveLength(1);
        expect(await app.connections()).toBe(before + 1);
      } finally {
        await carol.close();
      }
    });
  });
}
