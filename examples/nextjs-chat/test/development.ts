import { fileURLToPath } from "node:url";

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { upgradeStatus } from "../../../packages/next/test/upgrade-status.js";
import {
  editFile,
  launchBrowser,
  messageTexts,
  openRoom,
  signedIn,
  startApp,
  waitUntil,
  Wire,
  type App,
} from "./harness.js";

const ROOM_FILE = fileURLToPath(
  new URL("../components/room.tsx", import.meta.url),
);

/** Publishes a notice in `room` through the example's route handler. */
async function announce(page: Page, app: App, room: string, text: string) {
  const response = await page.request.post(`${app.base}/announce`, {
    data: { room, text },
  });
  expect(response.status()).toBe(200);
}

/** Registers the tests that run the example under `next dev`. */
export function developmentTests(): void {
  describe("nextjs-chat under next dev (StrictMode)", () => {
    let app: App;
    let browser: Browser;

    beforeAll(async () => {
      app = await startApp({ dev: true });
      browser = await launchBrowser();
      // The first request of each page or route compiles it; later ones
      // are quick. Every one the tests use is compiled here.
      const warm = await signedIn(browser, app, "warm");
      const page = await warm.newPage();
      await openRoom(page, app, "warm", 150_000);
      const notice = await page.request.post(`${app.base}/announce`, {
        data: { room: "warm", text: "warm" },
        timeout: 150_000,
      });
      expect(notice.status()).toBe(200);
      await page.goto(`${app.base}/`, { timeout: 150_000 });
      await warm.close();
      await waitUntil(
        async () => (await app.connections()) === 0,
        5_000,
        "the warm-up page's connection closed",
      );
    }, 180_000);

    afterAll(async () => {
      await browser?.close();
      await app?.stop();
    });

    it("opens one socket and one wire subscription per channel", async () => {
      const context = await signedIn(browser, app, "dora");
      try {
        const page = await context.newPage();
        const wire = new Wire(page);
        await openRoom(page, app, "strict");
        await new Promise((resolve) => setTimeout(resolve, 1_000));

        expect(wire.sockets).toHaveLength(1);
        expect(wire.frames("connect")).toHaveLength(1);
        expect(wire.frames("subscribe", "chat:strict")).toHaveLength(1);
        expect(wire.frames("subscribe", "typing:strict")).toHaveLength(1);
        expect(wire.frames("unsubscribe")).toHaveLength(0);
        expect(await app.connections()).toBe(1);
      } finally {
        await context.close();
      }
    });

    it("C21: one connection per tab, reloads and 20 remounts", async () => {
      const context = await signedIn(browser, app, "erin");
      const errors: string[] = [];
      try {
        const page = await context.newPage();
        page.on("pageerror", (error) => errors.push(error.message));
        let published = 0;
        const settle = async () => {
          await page
            .getByTestId("connection")
            .filter({ hasText: "Live" })
            .waitFor({ timeout: 15_000 });
          await waitUntil(
            async () => (await app.connections()) === 1,
            1_000,
            "one connection after settling",
          );
          published += 1;
          await announce(page, app, "remount", `notice ${published}`);
          await page.getByText(`notice ${published}`).waitFor();
          const texts = await messageTexts(page);
          expect(texts.filter((t) => t === `notice ${published}`)).toEqual([
            `notice ${published}`,
          ]);
          expect(new Set(texts).size).toBe(texts.length);
        };

        await openRoom(page, app, "remount");
        await settle();
        for (let i = 0; i < 3; i += 1) {
          await page.reload();
          await settle();
        }
        for (let i = 0; i < 20; i += 1) {
          await page.getByRole("link", { name: "All rooms" }).click();
          await page.getByText("Pick a room:").waitFor();
          await waitUntil(
            async () => (await app.connections()) === 0,
            1_000,
            `no connection after unmount ${i + 1}`,
          );
          await page.goBack();
          await settle();
        }
        await page.getByRole("link", { name: "All rooms" }).click();
        await waitUntil(
          async () => (await app.connections()) === 0,
          1_000,
          "no connection after the final unmount",
        );
        expect(published).toBe(24);
        expect(errors).toEqual([]);
      } finally {
        await context.close();
      }
    });

    it("C18: hot reload upgrades and works while /ws works", async () => {
      const context = await signedIn(browser, app, "finn");
      const console: string[] = [];
      let restore: (() => Promise<void>) | undefined;
      try {
        const page = await context.newPage();
        page.on("console", (message) => console.push(message.text()));
        const hmr: string[] = [];
        page.on("websocket", (socket) => {
          const path = new URL(socket.url()).pathname;
          if (path.startsWith("/_next/")) hmr.push(path);
        });
        const wire = new Wire(page);
        await openRoom(page, app, "hmr");
        await waitUntil(() => hmr.length > 0, 10_000, "the hot-reload socket");
        await page.evaluate(() => {
          (window as unknown as { marker: number }).marker = 1;
        });

        expect(await upgradeStatus(app.port, "/ws")).toBe(101);
        expect(await upgradeStatus(app.port, hmr[0]!)).toBe(101);
        expect(await upgradeStatus(app.port, "/foo")).toBe(404);
        expect(await upgradeStatus(app.port, "/_next/foo")).toBe(404);

        restore = await editFile(
          ROOM_FILE,
          "<h2>Rooms</h2>",
          "<h2>Rooms (edited)</h2>",
        );
        const editedAt = Date.now();
        await page.getByText("Rooms (edited)").waitFor({ timeout: 10_000 });
        expect(Date.now() - editedAt).toBeLessThan(3_000);
        expect(
          await page.evaluate(
            () => (window as unknown as { marker?: number }).marker,
          ),
        ).toBe(1);

        await announce(page, app, "hmr", "after the edit");
        await page.getByText("after the edit").waitFor();
        expect(wire.sockets).toHaveLength(1);
        expect(wire.open).toBe(1);
        expect(console.join("\n")).not.toMatch(/Invalid frame header/i);
        const output = app.output();
        expect(output).not.toMatch(
          /handleUpgrade\(\) was called more than once/,
        );
        expect(output).not.toMatch(/Invalid WebSocket frame|RangeError/);
      } finally {
        await restore?.();
        await context.close();
      }
    });
  });
}
