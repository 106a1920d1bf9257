/**
 * The HS256 token every system checks at its handshake: the same secret,
 * the same claims, the same `jose` verification.
 */
import { SignJWT, jwtVerify } from "jose";

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
  const key = new TextEncoder().encode(secret);
  return async (token) => {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      requiredClaims: ["sub", "exp"],
    });
    return payload.sub!;
  };
}
