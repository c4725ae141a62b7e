import type { Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { TabbifyError } from "../core/errors.js";
import { accessClaim } from "./registry-scope.js";
import { type ValidateBody, ValidateResponse } from "./schemas.js";
import type { TenantIdentity } from "./types.js";

const defaultTimeoutMs = 5000;

/**
 * Typed client of the auth service (`buildAuthApp`). `validate` resolves to the token's identity
 * or throws TabbifyError TOKEN_INVALID / TOKEN_EXPIRED (the server's verdict), or
 * AUTH_UNAVAILABLE when the service cannot give one (unreachable, timed out, 5xx, or an answer
 * that is not the auth API's, which means a misconfigured URL). Request and answer are the
 * types of the server's own schemas (src/auth/schemas.ts), and the answer is checked against its
 * schema before it is believed.
 */
export class AuthClient {
  readonly #validateUrl: URL;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, opts: { timeoutMs?: number } = {}) {
    let base: URL;
    try {
      base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
    } catch {
      throw new TabbifyError("CONFIG_INVALID", `auth URL "${baseUrl}" is not a URL`);
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TabbifyError("CONFIG_INVALID", `auth URL "${baseUrl}" must be http:// or https://`);
    }
    this.#validateUrl = new URL("v1/validate", base);
    this.#timeoutMs = opts.timeoutMs ?? defaultTimeoutMs;
  }

  async validate(token: string): Promise<TenantIdentity> {
    // The server would answer 400; an empty credential is simply not a valid token.
    if (typeof token !== "string" || token === "") throw new TabbifyError("TOKEN_INVALID", "no token given");
    const where = this.#validateUrl.origin;
    let response: Response;
    let body: unknown;
    try {
      response = await fetch(this.#validateUrl, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ token } satisfies Static<typeof ValidateBody>),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      body = await response.json().catch(() => undefined);
    } catch (err) {
      const reason = err instanceof Error && err.name === "TimeoutError" ? "timed out" : "is unreachable";
      throw new TabbifyError("AUTH_UNAVAILABLE", `auth service at ${where} ${reason}`);
    }
    const code = (body as { code?: unknown } | undefined)?.code;
    if (response.status === 401) {
      if (code === "TOKEN_EXPIRED") throw new TabbifyError("TOKEN_EXPIRED", "token has expired");
      throw new TabbifyError("TOKEN_INVALID", "token is not valid");
    }
    // Our request is always well-formed JSON, so a 400 is about the token itself (e.g. its size).
    if (response.status === 400 && code === "BAD_REQUEST") {
      throw new TabbifyError("TOKEN_INVALID", "token is not valid");
    }
    if (response.status !== 200) {
      throw new TabbifyError("AUTH_UNAVAILABLE", `auth service at ${where} answered HTTP ${response.status}`);
    }
    const identity = parseIdentity(body);
    if (!identity) {
      throw new TabbifyError("AUTH_UNAVAILABLE", `auth service at ${where} answered with an unexpected body`);
    }
    return identity;
  }
}

function parseIdentity(body: unknown): TenantIdentity | undefined {
  if (!Value.Check(ValidateResponse, body)) return undefined;
  const { subject, network, tenant, expires_at, scopes } = body;
  const identity: TenantIdentity = { subject, tenant, expiresAt: expires_at };
  if (network !== null) identity.network = network;
  if (scopes !== null) {
    // A limited token whose limits cannot be read must not pass as an unlimited one.
    const parsed = accessClaim(scopes);
    if (!parsed) return undefined;
    identity.scopes = parsed;
  }
  return identity;
}
