import { createHash, createPublicKey, type KeyObject } from "node:crypto";

import { CloseCode, matchesPattern } from "@switchboard/protocol";
import { createVerifier, TokenError as FastJwtError } from "fast-jwt";
import {
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";

import { ConfigError } from "./errors.js";
import type { ResolvedNamespace, ResolvedOptions } from "./options.js";

/** Clock skew tolerated on `exp` and `nbf`, in seconds. */
const CLOCK_TOLERANCE_S = 5;

/** Claims every token must carry. */
const REQUIRED_CLAIMS = ["sub", "exp"];

/** Channel patterns a token grants, from its `sb` claim. */
export interface Grants {
  readonly subscribe: readonly string[];
  readonly publish: readonly string[];
}

/** Who a connection is, from its token or its absence. */
export interface Identity {
  /** The token's `sub`; undefined for an anonymous connection. */
  readonly user: string | undefined;
  readonly grants: Grants;
  /** When the token expires, ms since the epoch. */
  readonly expiresAt: number | undefined;
}

/** An identity with no token: only what namespaces allow anonymously. */
export const ANONYMOUS: Identity = {
  user: undefined,
  grants: { subscribe: [], publish: [] },
  expiresAt: undefined,
};

/** A token was refused; `closeCode` is 4401 or 4419 (expired). */
export class TokenError extends Error {
  override readonly name = "TokenError";

  constructor(
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** fast-jwt's synchronous verifier: the payload, or a throw. */
type HmacVerifier = (token: string) => unknown;

/**
 * Verifies connection tokens: HS256 with a shared secret, RS256/ES256
 * with a public key, or keys from a JWKS URL.
 */
export class TokenVerifier {
  /**
   * HS256 runs synchronously on node:crypto: a WebCrypto HMAC is a job on
   * the thread pool and a promise, a fifth of a handshake's CPU.
   */
  private readonly hmac: HmacVerifier | undefined;
  /** The same checks but `exp`'s: is an expired token otherwise good? */
  private readonly hmacPastExp: HmacVerifier | undefined;
  private readonly key: KeyObject | JWTVerifyGetKey | undefined;
  private readonly algorithms: string[];

  constructor(private readonly options: ResolvedOptions) {
    if (options.tokenSecret !== undefined) {
      const hmacOptions = {
        key: options.tokenSecret,
        algorithms: ["HS256" as const],
        allowedAud: options.tokenAudience,
        allowedIss: options.tokenIssuer,
        clockTolerance: CLOCK_TOLERANCE_S * 1000,
        // fast-jwt checks `aud` and `iss` only when present.
        requiredClaims: [
          ...REQUIRED_CLAIMS,
          ...(options.tokenAudience !== undefined ? ["aud"] : []),
          ...(options.tokenIssuer !== undefined ? ["iss"] : []),
        ],
      };
      this.hmac = createVerifier(hmacOptions);
      this.hmacPastExp = createVerifier({
        ...hmacOptions,
        ignoreExpiration: true,
      });
      this.algorithms = ["HS256"];
    } else if (options.tokenPublicKey !== undefined) {
      const key = publicKey(options.tokenPublicKey);
      this.key = key;
      this.algorithms = key.asymmetricKeyType === "ec" ? ["ES256"] : ["RS256"];
    } else if (options.jwksUrl !== undefined) {
      this.key = createRemoteJWKSet(new URL(options.jwksUrl));
      this.algorithms = ["RS256", "ES256"];
    } else {
      this.algorithms = [];
    }
  }

  /** Verifies `token`; throws a `TokenError` when it is refused. */
  async verify(token: string): Promise<Identity> {
    const payload = this.hmac
      ? this.verifyHmac(this.hmac, token)
      : await this.verifyWithKey(token);
    // Both libraries check only that `sub` is there, and take an `exp`
    // of 1e309 (Infinity): a user who could not be named or a token that
    // never expires.
    const { sub, exp } = payload;
    if (typeof sub !== "string" || sub === "" || !Number.isFinite(exp)) {
      throw new TokenError(CloseCode.Unauthorized, "invalid token");
    }
    return {
      user: sub,
      grants: readGrants(payload.sb),
      expiresAt: (exp as number) * 1000,
    };
  }

  private verifyHmac(
    verifier: HmacVerifier,
    token: string,
  ): Record<string, unknown> {
    try {
      return verifier(token) as Record<string, unknown>;
    } catch (error) {
      // fast-jwt checks `exp` before `aud` and `iss`: an expired token
      // for another audience is invalid, not merely expired (4419 would
      // have the client fetch a new one and try again).
      if (
        error instanceof FastJwtError &&
        error.code === FastJwtError.codes.expired &&
        this.validPastExp(token)
      ) {
        throw new TokenError(CloseCode.TokenExpired, "token expired");
      }
      throw new TokenError(CloseCode.Unauthorized, "invalid token");
    }
  }

  private validPastExp(token: string): boolean {
    try {
      this.hmacPastExp?.(token);
      return true;
    } catch {
      return false;
    }
  }

  private async verifyWithKey(token: string): Promise<JWTPayload> {
    if (this.key === undefined) {
      throw new TokenError(
        CloseCode.Unauthorized,
        "tokens are not accepted: the node runs in open mode",
      );
    }
    try {
      const verified = await jwtVerify(token, this.key as KeyObject, {
        algorithms: this.algorithms,
        audience: this.options.tokenAudience,
        issuer: this.options.tokenIssuer,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: REQUIRED_CLAIMS,
      });
      return verified.payload;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) {
        throw new TokenError(CloseCode.TokenExpired, "token expired");
      }
      // Keys that cannot be fetched say nothing about the token: the
      // client may come back later instead of giving up for good.
      if (
        error instanceof joseErrors.JWKSTimeout ||
        !(error instanceof joseErrors.JOSEError)
      ) {
        throw new TokenError(CloseCode.Unavailable, "token keys unavailable");
      }
      throw new TokenError(CloseCode.Unauthorized, "invalid token");
    }
  }
}

/** Reads a PEM public key of a type whose algorithm the node supports. */
function publicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (cause) {
    throw new ConfigError("tokenPublicKey is not a PEM public key", { cause });
  }
  if (key.asymmetricKeyType !== "rsa" && key.asymmetricKeyType !== "ec") {
    throw new ConfigError(
      `tokenPublicKey must be an RSA or EC key, got ${key.asymmetricKeyType}`,
    );
  }
  // Keys jose refuses at every token would close every client with the
  // retry code: refused here instead, once.
  const { modulusLength, namedCurve } = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa" && (modulusLength ?? 0) < 2048) {
    throw new ConfigError(
      "tokenPublicKey: an RSA key needs at least 2048 bits, got " +
        modulusLength,
    );
  }
  if (key.asymmetricKeyType === "ec" && namedCurve !== "prime256v1") {
    throw new ConfigError(
      `tokenPublicKey: an EC key must be on P-256 (ES256), got ${namedCurve}`,
    );
  }
  return key;
}

function readGrants(claim: unknown): Grants {
  const sb = (typeof claim === "object" && claim) || {};
  return {
    subscribe: patterns((sb as Record<string, unknown>).subscribe),
    publish: patterns((sb as Record<string, unknown>).publish),
  };
}

function patterns(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.filter((p): p is string => typeof p === "string");
}

function granted(patterns: readonly string[], channel: string): boolean {
  return patterns.some((pattern) => matchesPattern(pattern, channel));
}

/** Whether `identity` may subscribe to (and read) `channel`. */
export function canSubscribe(
  identity: Identity,
  namespace: ResolvedNamespace,
  channel: string,
): boolean {
  return (
    namespace.anonymousSubscribe || granted(identity.grants.subscribe, channel)
  );
}

/** Whether `identity` may publish on `channel` from a connection. */
export function canPublish(
  identity: Identity,
  namespace: ResolvedNamespace,
  channel: string,
): boolean {
  return (
    namespace.clientPublish &&
    (namespace.anonymousPublish || granted(identity.grants.publish, channel))
  );
}

/**
 * The presence key of a connection: its user, or for an anonymous one a
 * hash of its session, so a session id is never shown to other clients.
 */
export function userKey(identity: Identity, session: string): string {
  if (identity.user !== undefined) return identity.user;
  const digest = createHash("sha256").update(session).digest("base64url");
  return `anon:${digest.slice(0, 16)}`;
}
