import { createHmac, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

import { exportSPKI, generateKeyPair, type CryptoKey } from "jose";
import { afterEach, describe, expect, it } from "vitest";

import { InsecureError, createNode } from "../src/index.js";
import {
  TestClient,
  mintToken,
  startNode,
  stopAll,
  type TokenClaims,
} from "./helpers.js";

const SECRET = "auth-test-secret-0123456789abcdef0123";

afterEach(stopAll);

/** A token for alice, signed with SECRET unless another key is given. */
function sign(
  claims: TokenClaims = {},
  key: string | CryptoKey = SECRET,
  alg?: string,
): Promise<string> {
  return mintToken(key, { sub: "alice", ...claims }, alg);
}

/** Sends `connect` with `token`; resolves with the reply or the close. */
async function tryConnect(
  port: number,
  token: string | undefined,
): Promise<{ client: TestClient; reply?: string; close?: number }> {
  const client = await TestClient.open(port);
  const reply = await client
    .request("connect", { token })
    .catch(() => undefined);
  if (reply) return { client, reply: reply.type };
  return { client, close: (await client.waitForClose()).code };
}

const grants = {
  sb: { subscribe: ["room:*", "dm:alice"], publish: ["room:*"] },
};

async function errorCode(
  client: TestClient,
  type: string,
  fields: Record<string, unknown>,
): Promise<string | undefined> {
  const reply = await client.request(type, fields);
  return reply.type === "ok" ? "ok" : (reply.code as string);
}

describe("token verification", () => {
  it("accepts an HS256 token signed with tokenSecret", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const { connectResult } = await TestClient.connect(port, {
      token: await sign({ exp }),
    });
    const expiresIn = connectResult?.expiresIn as number;
    expect(expiresIn).toBeGreaterThan(590_000);
    expect(expiresIn).toBeLessThanOrEqual(600_000);
  });

  it("closes 4401 for an HS256 token with another secret", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const token = await sign({}, `${SECRET}!`);
    const { close } = await tryConnect(port, token);
    expect(close).toBe(4401);
  });

  it("closes 4401 for an unsigned token (alg none)", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const encode = (value: object) =>
      Buffer.from(JSON.stringify(value)).toString("base64url");
    const exp = Math.floor(Date.now() / 1000) + 600;
    const token = `${encode({ alg: "none", typ: "JWT" })}.${encode({
      sub: "mallory",
      exp,
    })}.`;
    expect((await tryConnect(port, token)).close).toBe(4401);
  });

  it("closes 4401 for a token without sub or exp", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const noSub = await mintToken(SECRET);
    expect((await tryConnect(port, noSub)).close).toBe(4401);
    const noExp = await sign({ exp: null });
    expect((await tryConnect(port, noExp)).close).toBe(4401);
  });

  it("closes 4401 for a sub that is not a string, or empty", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const numeric = await sign({ sub: 42 } as unknown as TokenClaims);
    expect((await tryConnect(port, numeric)).close).toBe(4401);
    expect((await tryConnect(port, await sign({ sub: "" }))).close).toBe(4401);

    const { publicKey, privateKey } = await generateKeyPair("RS256");
    const keyed = await startNode({
      tokenPublicKey: await exportSPKI(publicKey),
    });
    const signed = await sign(
      { sub: 42 } as unknown as TokenClaims,
      privateKey,
      "RS256",
    );
    expect((await tryConnect(keyed.port, signed)).close).toBe(4401);
  });

  it("closes 4401 for an exp that never comes", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    // JSON text with 1e309 parses to Infinity; no JWT library writes it.
    const part = (text: string) => Buffer.from(text).toString("base64url");
    const header = part('{"alg":"HS256"}');
    const body = `${header}.${part('{"sub":"a","exp":1e309}')}`;
    const mac = createHmac("sha256", SECRET).update(body).digest("base64url");
    const forever = `${body}.${mac}`;
    expect((await tryConnect(port, forever)).close).toBe(4401);
  });

  it("closes 4401 for an HS512 token signed with the same secret", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const hs512 = await sign({}, SECRET, "HS512");
    expect((await tryConnect(port, hs512)).close).toBe(4401);
  });

  for (const alg of ["RS256", "ES256"] as const) {
    it(`accepts an ${alg} token verified with tokenPublicKey`, async () => {
      const { publicKey, privateKey } = await generateKeyPair(alg);
      const { port } = await startNode({
        tokenPublicKey: await exportSPKI(publicKey),
      });
      const { connectResult } = await TestClient.connect(port, {
        token: await sign({}, privateKey, alg),
      });
      expect(typeof connectResult?.client).toBe("string");

      const other = await generateKeyPair(alg);
      const forged = await sign({}, other.privateKey, alg);
      expect((await tryConnect(port, forged)).close).toBe(4401);
      const hs = await sign();
      expect((await tryConnect(port, hs)).close).toBe(4401);
    });
  }

  it("refuses a public key of an unsupported type", async () => {
    const { publicKey } = await generateKeyPair("EdDSA");
    const pem = await exportSPKI(publicKey);
    expect(() => createNode({ tokenPublicKey: pem })).toThrow(
      "tokenPublicKey must be an RSA or EC key, got ed25519",
    );
  });

  it("refuses RSA keys under 2048 bits and EC keys off P-256", () => {
    const pem = (key: { publicKey: KeyObject }) =>
      key.publicKey.export({ type: "spki", format: "pem" }).toString();
    expect(() =>
      createNode({
        tokenPublicKey: pem(
          generateKeyPairSync("rsa", { modulusLength: 1024 }),
        ),
      }),
    ).toThrow("an RSA key needs at least 2048 bits, got 1024");
    expect(() =>
      createNode({
        tokenPublicKey: pem(
          generateKeyPairSync("ec", { namedCurve: "secp384r1" }),
        ),
      }),
    ).toThrow("an EC key must be on P-256 (ES256), got secp384r1");
  });

  it("closes 4503, not 4401, when the JWKS cannot be fetched", async () => {
    const unreachable = createServer((_request, response) => {
      response.destroy();
    });
    await new Promise<void>((r) => unreachable.listen(0, "127.0.0.1", r));
    const { port: jwksPort } = unreachable.address() as AddressInfo;
    try {
      const { port } = await startNode({
        jwksUrl: `http://127.0.0.1:${jwksPort}/jwks.json`,
      });
      const { privateKey } = await generateKeyPair("RS256");
      const token = await sign({}, privateKey, "RS256");
      expect((await tryConnect(port, token)).close).toBe(4503);
    } finally {
      unreachable.close();
    }
  });

  it("closes 4401 when the audience does not match", async () => {
    const { port } = await startNode({
      tokenSecret: SECRET,
      tokenAudience: "switchboard",
    });
    const wrong = await sign({ aud: "other" });
    expect((await tryConnect(port, wrong)).close).toBe(4401);
    const missing = await sign();
    expect((await tryConnect(port, missing)).close).toBe(4401);
    const right = await sign({ aud: "switchboard" });
    expect((await tryConnect(port, right)).reply).toBe("ok");
  });

  it("closes 4401, not 4419, for an expired token for others", async () => {
    const { port } = await startNode({
      tokenSecret: SECRET,
      tokenAudience: "switchboard",
    });
    const exp = Math.floor(Date.now() / 1000) - 60;
    const other = await sign({ aud: "other", exp });
    expect((await tryConnect(port, other)).close).toBe(4401);
    const ours = await sign({ aud: "switchboard", exp });
    expect((await tryConnect(port, ours)).close).toBe(4419);
  });

  it("closes 4401 when the issuer does not match", async () => {
    const { port } = await startNode({
      tokenSecret: SECRET,
      tokenIssuer: "https://app.example",
    });
    const wrong = await sign({ iss: "https://evil.example" });
    expect((await tryConnect(port, wrong)).close).toBe(4401);
    const right = await sign({ iss: "https://app.example" });
    expect((await tryConnect(port, right)).reply).toBe("ok");
  });

  it("closes 4401 for a token not valid before a later time", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const nbf = Math.floor(Date.now() / 1000) + 60;
    const early = await sign({ nbf });
    expect((await tryConnect(port, early)).close).toBe(4401);
  });

  it("closes 4419 for a token expired at connect", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const exp = Math.floor(Date.now() / 1000) - 60;
    const { client, close } = await tryConnect(port, await sign({ exp }));
    expect(close).toBe(4419);
    expect(client.closedWith).toEqual({ code: 4419, reason: "token expired" });
  });

  it("accepts a token expired within the 5 s leeway", async () => {
    const { port } = await startNode({
      tokenSecret: SECRET,
      tokenGrace: 10_000,
    });
    const exp = Math.floor(Date.now() / 1000) - 2;
    expect((await tryConnect(port, await sign({ exp }))).reply).toBe("ok");
  });
});

describe("grants", () => {
  it("allows subscribe on a prefix grant and an exact name only", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const client = await TestClient.connect(port, {
      token: await sign(grants),
    });
    const subscribe = (channel: string) =>
      errorCode(client, "subscribe", { channel });
    expect(await subscribe("room:1")).toBe("ok");
    expect(await subscribe("room:lobby:2")).toBe("ok");
    expect(await subscribe("dm:alice")).toBe("ok");
    expect(await subscribe("dm:alice2")).toBe("forbidden");
    expect(await subscribe("dm:bob")).toBe("forbidden");
    expect(await subscribe("roomy")).toBe("forbidden");
    expect(await subscribe("other:1")).toBe("forbidden");
  });

  it("allows publish only where a publish grant matches", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const client = await TestClient.connect(port, {
      token: await sign(grants),
    });
    const publish = (channel: string) =>
      errorCode(client, "publish", { channel, data: 1 });
    expect(await publish("room:1")).toBe("ok");
    expect(await publish("dm:alice")).toBe("forbidden");
    expect(await publish("other:1")).toBe("forbidden");
  });

  it("answers forbidden with a complete error frame", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const client = await TestClient.connect(port, {
      token: await sign(grants),
    });
    const reply = await client.request("subscribe", { channel: "dm:x" });
    expect(reply).toEqual({
      type: "error",
      id: reply.id,
      code: "forbidden",
      message: "subscribe not granted",
      temporary: false,
    });
  });

  it("requires subscribe permission for history and presence", async () => {
    const { port } = await startNode({ tokenSecret: SECRET });
    const client = await TestClient.connect(port, {
      token: await sign(grants),
    });
    expect(await errorCode(client, "history", { channel: "dm:bob" })).toBe(
      "forbidden",
    );
    expect(await errorCode(client, "presence", { channel: "dm:bob" })).toBe(
      "forbidden",
    );
    expect(await errorCode(client, "history", { channel: "room:1" })).toBe(
      "ok",
    );
    expect(await errorCode(client, "presence", { channel: "room:1" })).toBe(
      "ok",
    );
  });

  it("refuses recovery without subscribe permission", async () => {
    const { node, port } = await startNode({ tokenSecret: SECRET });
    const { epoch } = await node.publish("dm:bob", { secret: 1 });
    const client = await TestClient.connect(port, {
      token: await sign(grants),
    });
    const reply = await client.request("subscribe", {
      channel: "dm:bob",
      since: { epoch, offset: 0 },
    });
    expect(reply).toMatchObject({ type: "error", code: "forbidden" });
    expect(reply).not.toHaveProperty("result");
  });

  it("refuses client publish where the namespace forbids it", async () => {
    const { port } = await startNode({
      tokenSecret: SECRET,
      namespaces: { feed: { clientPublish: false } },
    });
    const client = await TestClient.connect(port, {
      token: await sign({ sb: { publish: ["*"] } }),
    });
    expect(
      await errorCode(client, "publish", { channel: "feed:1", data: 1 }),
    ).toBe("forbidden");
    expect(
      await errorCode(client, "publish", { channel: "room:1", data: 1 }),
    ).toBe("ok");
  });
});

describe("anonymous connections in token mode", () => {
  const namespaces = {
    public: { anonymousSubscribe: true },
    board: { anonymousSubscribe: true, anonymousPublish: true },
  };

  it("connects without a token as an anonymous client", async () => {
    const { port } = await startNode({ tokenSecret: SECRET, namespaces });
    const { connectResult } = await TestClient.connect(port);
    expect(connectResult).not.toHaveProperty("expiresIn");
  });

  it("may subscribe only where the namespace allows anonymous", async () => {
    const { port } = await startNode({ tokenSecret: SECRET, namespaces });
    const client = await TestClient.connect(port);
    const subscribe = (channel: string) =>
      errorCode(client, "subscribe", { channel });
    expect(await subscribe("public:news")).toBe("ok");
    expect(await subscribe("board:1")).toBe("ok");
    expect(await subscribe("room:1")).toBe("forbidden");
    expect(await subscribe("plain")).toBe("forbidden");
  });

  it("may publish only where anonymous publish is allowed", async () => {
    const { port } = await startNode({ tokenSecret: SECRET, namespaces });
    const client = await TestClient.connect(port);
    const publish = (channel: string) =>
      errorCode(client, "publish", { channel, data: 1 });
    expect(await publish("board:1")).toBe("ok");
    expect(await publish("public:news")).toBe("forbidden");
    expect(await publish("room:1")).toBe("forbidden");
  });
});

describe("open mode", () => {
  it("refuses to listen on a non-loopback host without insecure", async () => {
    const refused = createNode({ port: 0, host: "0.0.0.0" });
    const error = await refused.listen().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InsecureError);
    expect(error).toMatchObject({ code: "SB_ERR_INSECURE" });
    await refused.close();
  });

  it("passes the open-mode check with insecure", async () => {
    // 192.0.2.1 (TEST-NET-1) is not on this machine: the OS refuses the
    // bind, which shows the node got past its own check without exposing
    // a listener beyond loopback.
    const allowed = createNode({ port: 0, host: "192.0.2.1", insecure: true });
    const error = await allowed.listen().catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(InsecureError);
    expect(error).toMatchObject({ code: "EADDRNOTAVAIL" });
    await allowed.close();

    const refused = createNode({ port: 0, host: "192.0.2.1" });
    await expect(refused.listen()).rejects.toBeInstanceOf(InsecureError);
    await refused.close();
  });

  it("passes the check on a non-loopback host in token mode", async () => {
    const secured = createNode({
      port: 0,
      host: "192.0.2.1",
      tokenSecret: SECRET,
    });
    const error = await secured.listen().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "EADDRNOTAVAIL" });
    await secured.close();
  });

  it("lets an anonymous client subscribe and publish anywhere", async () => {
    const { port } = await startNode();
    const client = await TestClient.connect(port);
    expect(await errorCode(client, "subscribe", { channel: "any:1" })).toBe(
      "ok",
    );
    expect(
      await errorCode(client, "publish", { channel: "other", data: 1 }),
    ).toBe("ok");
  });

  it("ignores a token in open mode and connects anonymously", async () => {
    const { port } = await startNode();
    const { connectResult } = await TestClient.connect(port, {
      token: "not-a-jwt",
    });
    expect(connectResult).not.toHaveProperty("expiresIn");
  });
});
