import { isValidChannel } from "@switchboard/protocol";
import { SignJWT, importPKCS8, type CryptoKey, type KeyObject } from "jose";

import { InvalidArgumentError, KeyError } from "./errors.js";

/** Lifetime of a minted token, in ms (10 min). */
export const DEFAULT_TOKEN_TTL_MS = 600_000;

/** Signature algorithms a node verifies. */
export type TokenAlgorithm = "HS256" | "RS256" | "ES256";

/**
 * Channel patterns granted to a token, the `sb` claim: a channel name, or
 * a prefix ending in `*` (`room:*`).
 */
export interface Grants {
  subscribe?: readonly string[];
  publish?: readonly string[];
}

/** Options of `mintToken`. */
export interface MintTokenOptions {
  /** The user, the token's `sub`; what presence lists. */
  user: string;
  /** What the user may subscribe to and publish on. @default none */
  grants?: Grants;
  /** Lifetime from now, in ms. @default 600000 */
  expiresInMs?: number;
  /** The node's `--token-secret`, for HS256. */
  secret?: string;
  /**
   * A private key for RS256 or ES256: PKCS#8 PEM text, or a key object.
   * Its public half is the node's `--token-public-key` (or in its JWKS).
   */
  privateKey?: string | CryptoKey | KeyObject;
  /** @default "HS256" with `secret`, "RS256" with `privateKey` */
  algorithm?: TokenAlgorithm;
  /** `aud`, when the node checks `--token-audience`. */
  audience?: string;
  /** `iss`, when the node checks `--token-issuer`. */
  issuer?: string;
  /** `kid` header, to pick a key from a JWKS. */
  keyId?: string;
}

/**
 * Signs a connection token for `user` with the `sb` grants claim. Runs on
 * Node and edge runtimes (Web Crypto through `jose`). Throws an
 * `InvalidArgumentError` for bad options, a `KeyError` for a key that
 * cannot sign with the algorithm.
 */
export async function mintToken(options: MintTokenOptions): Promise<string> {
  const { user, secret, privateKey } = options;
  if (typeof user !== "string" || user === "") {
    throw new InvalidArgumentError("user must be a non-empty string");
  }
  if ((secret === undefined) === (privateKey === undefined)) {
    throw new InvalidArgumentError("pass exactly one of secret, privateKey");
  }
  const algorithm =
    options.algorithm ?? (secret !== undefined ? "HS256" : "RS256");
  if (!["HS256", "RS256", "ES256"].includes(algorithm)) {
    throw new InvalidArgumentError(
      `algorithm must be HS256, RS256 or ES256, got ${algorithm}`,
    );
  }
  if ((algorithm === "HS256") !== (secret !== undefined)) {
    throw new InvalidArgumentError(
      "HS256 takes secret; RS256 and ES256 take privateKey",
    );
  }
  const ttl = options.expiresInMs ?? DEFAULT_TOKEN_TTL_MS;
  if (!Number.isFinite(ttl) || ttl < 1000) {
    throw new InvalidArgumentError("expiresInMs must be at least 1000");
  }

  const jwt = new SignJWT({ sb: grantsClaim(options.grants) })
    .setProtectedHeader({ alg: algorithm, typ: "JWT", kid: options.keyId })
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime(Math.floor((Date.now() + ttl) / 1000));
  if (options.audience !== undefined) jwt.setAudience(options.audience);
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);

  const key = await signingKey(algorithm, secret, privateKey);
  try {
    return await jwt.sign(key);
  } catch (cause) {
    throw new KeyError(`the key cannot sign ${algorithm}`, { cause });
  }
}

function grantsClaim(grants: Grants | undefined): Required<Grants> {
  const subscribe = patterns(grants?.subscribe, "subscribe");
  const publish = patterns(grants?.publish, "publish");
  return { subscribe, publish };
}

function patterns(list: unknown, name: string): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) {
    throw new InvalidArgumentError(`grants.${name} must be an array`);
  }
  for (const pattern of list) {
    const prefix = typeof pattern === "string" ? pattern.replace(/\*$/, "") : 0;
    if (prefix !== "" && !isValidChannel(prefix)) {
      throw new InvalidArgumentError(
        `grants.${name}: ${JSON.stringify(pattern)} is not a channel name ` +
          "or a prefix ending in *",
      );
    }
  }
  return [...(list as string[])];
}

async function signingKey(
  algorithm: TokenAlgorithm,
  secret: string | undefined,
  privateKey: string | CryptoKey | KeyObject | undefined,
): Promise<Uint8Array | CryptoKey | KeyObject> {
  if (secret !== undefined) {
    if (typeof secret !== "string" || secret === "") {
      throw new InvalidArgumentError("secret must be a non-empty string");
    }
    return new TextEncoder().encode(secret);
  }
  if (typeof privateKey !== "string") return privateKey!;
  try {
    return await importPKCS8(privateKey, algorithm);
  } catch (cause) {
    throw new KeyError(`privateKey is not a PKCS#8 PEM key for ${algorithm}`, {
      cause,
    });
  }
}
