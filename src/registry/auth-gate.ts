import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { AuthClient } from "../auth/client.js";
import { repositoryAllowed } from "../auth/namespace.js";
import type { RegistryTokenGrant, RegistryTokens } from "../auth/registry-token.js";
import { TabbifyError } from "../core/errors.js";
import type { V2Route } from "./names.js";

/** Who a verified registry token speaks for. */
export interface RegistryIdentity {
  subject: string;
  tenant: string;
}

/** A token request body is a short form; anything longer is not one. */
const maxTokenRequestBytes = 64 * 1024;

/**
 * The OCI bearer-token gate in front of /v2 (issue 2 §3, the seed's design):
 * - `/auth/token` exchanges a tenant JWT (Basic password or bearer) for a short-lived registry
 *   token, calling the auth service once per exchange;
 * - every /v2 request carries that token, verified locally (no call to auth on the hot path);
 * - tenants are confined to `<tenant>/…` repositories; `_catalog` is denied (phase 1).
 */
export class AuthGate {
  constructor(
    private readonly client: Pick<AuthClient, "validate">,
    private readonly tokens: RegistryTokens,
    readonly service: string,
  ) {}

  /** The `WWW-Authenticate` challenge for a request: realm on the host the client used. */
  challenge(protocol: string, host: string | undefined, route: V2Route | null): string {
    const realm = `${protocol}://${host ?? "localhost"}/auth/token`;
    const parts = [`realm="${realm}"`, `service="${this.service}"`];
    if (route && "name" in route) parts.push(`scope="repository:${route.name}:pull,push"`);
    return `Bearer ${parts.join(",")}`;
  }

  /**
   * Verifies the bearer token and the tenant's right to the route. Throws UNAUTHORIZED (or
   * TOKEN_INVALID / TOKEN_EXPIRED, also 401) without a valid token and DENIED outside the
   * tenant's namespace. `mountFrom` is the source repository of a cross-repository mount.
   */
  async authorize(
    headers: IncomingHttpHeaders,
    route: V2Route | null,
    mountFrom?: string,
  ): Promise<RegistryIdentity> {
    const bearer = bearerToken(headers.authorization);
    if (!bearer)
      throw new TabbifyError("UNAUTHORIZED", "authentication required: get a token from /auth/token");
    const identity = await this.tokens.verify(bearer);
    if (route === null || route.kind === "base") return identity;
    if (route.kind === "catalog") {
      throw new TabbifyError("DENIED", "the catalog is not available to tenants");
    }
    if (!repositoryAllowed(identity.tenant, route.name)) {
      throw new TabbifyError("DENIED", `repository ${route.name.slice(0, 300)} is outside your namespace`, {
        name: route.name.slice(0, 300),
      });
    }
    if (mountFrom !== undefined && !repositoryAllowed(identity.tenant, mountFrom)) {
      throw new TabbifyError(
        "DENIED",
        `cannot mount from ${mountFrom.slice(0, 300)}: outside your namespace`,
        {
          from: mountFrom.slice(0, 300),
        },
      );
    }
    return identity;
  }

  /**
   * `GET|POST /auth/token`: the tenant JWT comes as the Basic-auth password (docker login), as a
   * bearer, or (POST, OAuth2 password grant as containerd sends it) as the form's `password`.
   */
  async issue(method: string, headers: IncomingHttpHeaders, body: Readable): Promise<RegistryTokenGrant> {
    let jwt = credentialFromHeader(headers.authorization);
    if (!jwt && method === "POST") {
      const form = new URLSearchParams(await readSmallBody(body));
      const grant = form.get("grant_type");
      if (grant === "password") jwt = form.get("password") ?? undefined;
      else if (grant === "refresh_token") jwt = form.get("refresh_token") ?? undefined;
    }
    if (!jwt) {
      throw new TabbifyError(
        "UNAUTHORIZED",
        "send your tenant token as the Basic-auth password (docker login -u x -p <token>) or as a bearer",
      );
    }
    const identity = await this.client.validate(jwt);
    return this.tokens.mint(identity, { service: this.service });
  }
}

function bearerToken(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m?.[1];
}

function credentialFromHeader(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const basic = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (basic) {
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const password = colon >= 0 ? decoded.slice(colon + 1) : "";
    return password || undefined;
  }
  return bearerToken(header);
}

async function readSmallBody(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > maxTokenRequestBytes) {
      throw new TabbifyError("UNAUTHORIZED", "token request body is too large");
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
