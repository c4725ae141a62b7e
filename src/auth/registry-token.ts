import { randomBytes, randomUUID } from "node:crypto";
import { jwtVerify, SignJWT } from "jose";
import { TabbifyError } from "../core/errors.js";
import { isValidTenant } from "./namespace.js";
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

/**
 * Short-lived registry tokens (the OCI bearer flow's `/auth/token` answer): HS256 signed with a
 * per-process random 32-byte secret unless one is given, so the registry's hot path verifies
 * them locally and every restart invalidates the outstanding ones. A token never outlives the
 * tenant token it was minted from.
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

  async mint(identity: TenantIdentity, opts: { service?: string } = {}): Promise<RegistryTokenGrant> {
    if (!isValidTenant(identity.tenant)) {
      throw new TabbifyError("TOKEN_INVALID", "the token's tenant is not a valid registry path component");
    }
    const now = Math.floor(this.#now());
    if (identity.expiresAt <= now) throw new TabbifyError("TOKEN_EXPIRED", "tenant token has expired");
    const expiresAt = Math.min(now + this.ttlSeconds, identity.expiresAt);
    let jwt = new SignJWT({ tenant: identity.tenant })
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

  /** Throws TabbifyError TOKEN_EXPIRED or TOKEN_INVALID; messages never include the token. */
  async verify(token: string): Promise<{ subject: string; tenant: string; expiresAt: number }> {
    if (typeof token !== "string" || token === "")
      throw new TabbifyError("TOKEN_INVALID", "no registry token given");
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#secret, {
        algorithms: [algorithm],
        issuer: this.issuer,
        requiredClaims: ["sub", "exp", "tenant"],
        currentDate: new Date(this.#now() * 1000),
      }));
    } catch (err) {
      throw joseFailure(err, "registry token");
    }
    const { sub, tenant, exp } = payload;
    if (typeof sub !== "string" || typeof tenant !== "string" || typeof exp !== "number") {
      throw new TabbifyError("TOKEN_INVALID", "registry token has malformed claims");
    }
    return { subject: sub, tenant, expiresAt: exp };
  }
}
