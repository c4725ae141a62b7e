import { randomBytes, randomUUID } from "node:crypto";
import { jwtVerify, SignJWT } from "jose";
import { TabbifyError } from "../core/errors.js";
import { isValidTenant } from "./namespace.js";
import { accessClaim, type ResourceAccess } from "./registry-scope.js";
import { joseFailure } from "./tenant-token.js";
import type { TenantIdentity } from "./types.js";

const algorithm = "HS256";
const minSecretBytes = 32;

export interface RegistryTokenGrant {
  /** The registry token; `access_token` repeats it because docker reads one and OAuth2 clients the other. */
  token: string;
  access_token: string;
  /** Seconds from `issued_at` until the token expires. */
  expires_in: number;
  /** RFC 3339. */
  issued_at: string;
}

/** Who a verified registry token speaks for, and what it may do. */
export interface RegistryTokenClaims {
  subject: string;
  tenant: string;
  /** Unix seconds. */
  expiresAt: number;
  /** The Docker token format's `access` list: every request is checked against it. */
  access: ResourceAccess[];
  /** A robot's limits, copied from its tenant token: what no new token would grant either. */
  scopes?: ResourceAccess[];
}

/**
 * Short-lived registry tokens (the OCI bearer flow's `/auth/token` answer): HS256 signed with a
 * per-process random 32-byte secret unless one is given, so the registry's hot path verifies
 * them locally and every restart invalidates the outstanding ones. A token never outlives the
 * tenant token it was minted from, and carries the `access` list it was granted (Docker token
 * format): a token minted without one grants nothing beyond `GET /v2/`.
 */
export class RegistryTokens {
  readonly ttlSeconds: number;
  readonly issuer: string;
  readonly #secret: Uint8Array;
  readonly #now: () => number;

  constructor(
    opts: {
      secret?: Uint8Array;
      ttlSeconds?: number;
      issuer?: string;
      /** Clock in unix seconds; tests pass a fake one. */
      now?: () => number;
    } = {},
  ) {
    if (opts.secret !== undefined && opts.secret.byteLength < minSecretBytes) {
      throw new TabbifyError(
        "CONFIG_INVALID",
        `the registry token secret must be at least ${minSecretBytes} bytes`,
      );
    }
    const ttl = opts.ttlSeconds ?? 300;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) {
      throw new TabbifyError(
        "CONFIG_INVALID",
        "the registry token lifetime must be a positive whole number of seconds",
      );
    }
    // Copied so that a caller reusing its buffer cannot change the key under us.
    this.#secret = opts.secret ? Uint8Array.from(opts.secret) : new Uint8Array(randomBytes(minSecretBytes));
    this.ttlSeconds = ttl;
    this.issuer = opts.issuer ?? "tabbify-registry";
    this.#now = opts.now ?? (() => Date.now() / 1000);
  }

  async mint(
    identity: TenantIdentity,
    opts: { service?: string; access?: readonly ResourceAccess[] } = {},
  ): Promise<RegistryTokenGrant> {
    if (!isValidTenant(identity.tenant)) {
      throw new TabbifyError("TOKEN_INVALID", "the token's tenant is not a valid registry path component");
    }
    const now = Math.floor(this.#now());
    if (identity.expiresAt <= now) throw new TabbifyError("TOKEN_EXPIRED", "tenant token has expired");
    const expiresAt = Math.min(now + this.ttlSeconds, identity.expiresAt);
    const claims: Record<string, unknown> = { tenant: identity.tenant, access: opts.access ?? [] };
    if (identity.scopes !== undefined) claims.scopes = identity.scopes;
    let jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: algorithm, typ: "JWT" })
      .setSubject(identity.subject)
      .setIssuer(this.issuer)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .setJti(randomUUID());
    if (opts.service) jwt = jwt.setAudience(opts.service);
    const token = await jwt.sign(this.#secret);
    return {
      token,
      access_token: token,
      expires_in: expiresAt - now,
      issued_at: new Date(now * 1000).toISOString(),
    };
  }

  /**
   * Throws TabbifyError TOKEN_EXPIRED or TOKEN_INVALID; messages never include the token. With
   * `audience`, a token minted for another service (`aud`) is invalid here.
   */
  async verify(token: string, opts: { audience?: string } = {}): Promise<RegistryTokenClaims> {
    if (typeof token !== "string" || token === "")
      throw new TabbifyError("TOKEN_INVALID", "no registry token given");
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#secret, {
        algorithms: [algorithm],
        issuer: this.issuer,
        requiredClaims: ["sub", "exp", "tenant"],
        ...(opts.audience !== undefined ? { audience: opts.audience } : {}),
        currentDate: new Date(this.#now() * 1000),
      }));
    } catch (err) {
      throw joseFailure(err, "registry token");
    }
    const { sub, tenant, exp } = payload;
    const access = accessClaim(payload.access);
    if (typeof sub !== "string" || typeof tenant !== "string" || typeof exp !== "number" || !access) {
      throw new TabbifyError("TOKEN_INVALID", "registry token has malformed claims");
    }
    const claims: RegistryTokenClaims = { subject: sub, tenant, expiresAt: exp, access };
    if (payload.scopes !== undefined) {
      const scopes = accessClaim(payload.scopes);
      if (!scopes) throw new TabbifyError("TOKEN_INVALID", "registry token has malformed claims");
      claims.scopes = scopes;
    }
    return claims;
  }
}
