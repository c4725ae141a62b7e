import { randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { TabbifyError } from "../core/errors.js";
import type { SigningKey } from "./keys.js";
import { isValidTenant } from "./namespace.js";
import { accessClaim, type ResourceAccess } from "./registry-scope.js";
import type { TenantIdentity } from "./types.js";

export const tenantTokenIssuer = "tabbify-auth";
const algorithm = "EdDSA";

/** Longest lifetime `issueTenantToken` accepts: ten years, far beyond any sane use. */
export const maxTenantTokenTtlSeconds = 3650 * 24 * 3600;

/**
 * Issues a tenant JWT: EdDSA over Ed25519, claims `sub`, `network` (= tenant), `iat`, `exp`,
 * `iss` "tabbify-auth" and a random `jti`; the header names the key by `kid`. A robot token also
 * carries `access` (its scopes, Docker token format): the registry grants no more than they allow.
 */
export async function issueTenantToken(
  key: SigningKey,
  opts: { tenant: string; subject: string; ttlSeconds: number; scopes?: readonly ResourceAccess[] },
): Promise<string> {
  if (!isValidTenant(opts.tenant)) {
    throw new TabbifyError(
      "TENANT_INVALID",
      `tenant "${opts.tenant}" is not a valid registry path component: use lowercase letters and digits, joined by ".", "_", "__" or "-"`,
    );
  }
  if (typeof opts.subject !== "string" || opts.subject.trim() === "") {
    throw new TabbifyError("SUBJECT_INVALID", "subject must be a non-empty string");
  }
  if (
    !Number.isSafeInteger(opts.ttlSeconds) ||
    opts.ttlSeconds <= 0 ||
    opts.ttlSeconds > maxTenantTokenTtlSeconds
  ) {
    throw new TabbifyError(
      "TTL_INVALID",
      `token lifetime must be a whole number of seconds between 1 and ${maxTenantTokenTtlSeconds}`,
    );
  }
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { network: opts.tenant };
  if (opts.scopes !== undefined) claims.access = opts.scopes;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: algorithm, kid: key.kid, typ: "JWT" })
    .setSubject(opts.subject)
    .setIssuer(tenantTokenIssuer)
    .setIssuedAt(now)
    .setExpirationTime(now + opts.ttlSeconds)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

/**
 * Verifies a tenant JWT's signature, algorithm, issuer and expiry. The tenant is the `network`
 * claim, else `sub`. Throws TabbifyError TOKEN_EXPIRED for a well-signed but expired token and
 * TOKEN_INVALID for everything else; messages never include the token.
 */
export async function verifyTenantToken(
  key: Pick<SigningKey, "publicKey">,
  token: string,
): Promise<TenantIdentity> {
  if (typeof token !== "string" || token === "") throw invalid("no token given");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key.publicKey, {
      algorithms: [algorithm],
      issuer: tenantTokenIssuer,
      requiredClaims: ["sub", "exp"],
    }));
  } catch (err) {
    throw joseFailure(err, "tenant token");
  }
  const { sub, network, exp } = payload;
  if (typeof sub !== "string" || sub === "") throw invalid("tenant token has an empty subject");
  if (network !== undefined && (typeof network !== "string" || network === "")) {
    throw invalid("tenant token has a malformed network claim");
  }
  if (typeof exp !== "number") throw invalid("tenant token has a malformed expiry");
  const identity: TenantIdentity = { subject: sub, tenant: network ?? sub, expiresAt: exp };
  if (network !== undefined) identity.network = network;
  if (payload.access !== undefined) {
    const scopes = accessClaim(payload.access);
    if (!scopes) throw invalid("tenant token has a malformed access claim");
    identity.scopes = scopes;
  }
  return identity;
}

function invalid(message: string): TabbifyError {
  return new TabbifyError("TOKEN_INVALID", message);
}

/**
 * Maps a jose verification failure to TOKEN_EXPIRED / TOKEN_INVALID. jose checks the signature
 * before the claims, so "expired" is only ever said of a token we really signed. Anything that
 * is not a jose error is a bug (a wrong key type, say) and is rethrown as is.
 */
export function joseFailure(err: unknown, what: string): TabbifyError {
  if (err instanceof joseErrors.JWTExpired) return new TabbifyError("TOKEN_EXPIRED", `${what} has expired`);
  if (err instanceof joseErrors.JOSEError) {
    const reason =
      err instanceof joseErrors.JWSSignatureVerificationFailed
        ? "its signature does not verify"
        : err instanceof joseErrors.JOSEAlgNotAllowed
          ? "it uses an algorithm not accepted here"
          : err instanceof joseErrors.JWTClaimValidationFailed
            ? `its "${err.claim}" claim is not acceptable`
            : "it is malformed";
    return new TabbifyError("TOKEN_INVALID", `${what} is not valid: ${reason}`);
  }
  throw err;
}
