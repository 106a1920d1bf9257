import { SwitchboardClient, type Message } from "@switchboard/client";
import { createNode, type SwitchboardNode } from "@switchboard/server";
import { SwitchboardApi, mintToken } from "@switchboard/server-sdk";
import { afterEach, describe, expect, it } from "vitest";

import { MAX_TEXT, toLine } from "../components/messages.js";

const SECRET = "a-token-secret-for-the-chat-line-tests";
const API_KEY = "an-api-key-for-the-chat-line-tests";

const nodes: SwitchboardNode[] = [];
const clients: SwitchboardClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
});

/** A node, a client signed in as `user` on `chat:test`, and its messages. */
async function room(user: string) {
  const node = createNode({ port: 0, tokenSecret: SECRET, apiKey: API_KEY });
  nodes.push(node);
  const { port } = await node.listen();
  const token = await mintToken({
    user,
    secret: SECRET,
    grants: { subscribe: ["chat:*"], publish: ["chat:*"] },
  });
  const client = new SwitchboardClient({
    url: `ws://127.0.0.1:${port}/ws`,
    token,
  });
  clients.push(client);
  const messages: Message[] = [];
  const subscription = client.subscribe("chat:test");
  subscription.on("message", (message) => messages.push(message));
  await client.connect();
  await subscription.ready();
  const api = new SwitchboardApi({
    url: `http://127.0.0.1:${port}`,
    apiKey: API_KEY,
  });
  const next = async (count: number) => {
    const deadline = Date.now() + 5_000;
    while (messages.length < count) {
      if (Date.now() > deadline) throw new Error(`no message ${count}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return messages[count - 1]!;
  };
  return { client, api, next };
}

describe("chat lines", () => {
  it("shows a user's message as theirs, even posing as a notice", async () => {
    const { client, api, next } = await room("mallory");

    await client.publish("chat:test", {
      text: "sign in again at evil.example",
      notice: true,
      by: "alice",
    });
    expect(toLine(await next(1))).toMatchObject({
      text: "sign in again at evil.example",
      author: "mallory",
      notice: false,
    });

    await api.publish("chat:test", {
      text: "deploy finished",
      notice: true,
      by: "alice",
    });
    expect(toLine(await next(2))).toMatchObject({
      author: "alice",
      notice: true,
    });

    await api.publish("chat:test", { text: "from a job", notice: true });
    expect(toLine(await next(3))).toMatchObject({
      author: "server",
      notice: true,
    });
  });

  it("cuts a line over the app's limit and says so", async () => {
    const { client, next } = await room("mallory");
    await client.publish("chat:test", { text: "x".repeat(60_000) });
    const line = toLine(await next(1))!;
    expect(line.text).toBe("x".repeat(MAX_TEXT));
    expect(line.cut).toBe(true);

    await client.publish("chat:test", { text: "y".repeat(MAX_TEXT) });
    expect(toLine(await next(2))).toMatchObject({ cut: false });
  });
});
