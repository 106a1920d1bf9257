/**
 * The HS256 token every system checks at its handshake: the same secret,
 * the same claims, the same verification as Switchboard's (fast-jwt,
 * synchronous, its verifier built once).
 */
import { createVerifier } from "fast-jwt";
import { SignJWT } from "jose";

/** Channels of the bench live in this namespace. */
export const NAMESPACE = "bench";

/** Mints a token for `user`, valid for an hour, granting bench channels. */
export function mintToken(secret: string, user: string): Promise<string> {
  return new SignJWT({ sb: { subscribe: [`${NAMESPACE}:*`] } })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(user)
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(secret));
}

/** A verifier for tokens signed with `secret`; rejects a bad token. */
export function tokenVerifier(
  secret: string,
): (token: string) => Promise<string> {
  const verify = createVerifier({
    key: secret,
    algorithms: ["HS256"],
    clockTolerance: 5000,
    requiredClaims: ["sub", "exp"],
  });
  return async (token) => {
    const payload = verify(token) as { sub: unknown };
    if (typeof payload.sub !== "string") throw new Error("invalid token");
    return payload.sub;
  };
}
