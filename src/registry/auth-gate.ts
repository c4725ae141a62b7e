import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { AuthClient } from "../auth/client.js";
import { repositoryAllowed } from "../auth/namespace.js";
import {
  allows,
  catalogAccess,
  formatScope,
  grantFor,
  limitTo,
  parseScopes,
  type ResourceAccess,
} from "../auth/registry-scope.js";
import type { RegistryTokenGrant, RegistryTokens } from "../auth/registry-token.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import { requiredAccess } from "./access.js";
import type { V2Route } from "./names.js";

/** Who a verified registry token speaks for, and what it may do. */
export interface RegistryIdentity {
  subject: string;
  tenant: string;
  access: ResourceAccess[];
  /** A robot token's limits; absent for a token that speaks for the whole tenant. */
  scopes?: ResourceAccess[];
}

export interface Authorization {
  identity: RegistryIdentity;
  /**
   * Whether a cross-repository mount may go ahead: the token must hold `pull` on the source.
   * When it does not (in the tenant's own namespace), the mount is not tried and the POST opens
   * a plain upload session, the spec's answer for a mount the registry will not do.
   */
  mountAllowed: boolean;
}

/** A token request body is a short form; anything longer is not one. */
const maxTokenRequestBytes = 64 * 1024;

/**
 * The OCI bearer-token gate in front of /v2 (the seed's design, issue 9 §5):
 * - `/auth/token` exchanges a tenant JWT (Basic password or bearer) for a short-lived registry
 *   token, calling the auth service once per exchange. The token's `access` list is what the
 *   request's `scope` parameters asked for, less what the tenant may not have (dropped, not
 *   refused): pull, push and delete on repositories under `<tenant>/`, nothing else, and for a
 *   robot token (a tenant JWT with scopes) nothing beyond its scopes;
 * - every /v2 request carries that token, verified locally (no call to auth on the hot path),
 *   and needs the action its method implies on its repository (access.ts);
 * - `_catalog` takes any valid token and lists only what it may pull (the tenant's repositories);
 * - outside the tenant's namespace, or beyond a robot's scopes, the answer is 403 DENIED, since
 *   no token the caller can get would do; inside it, a token without the action gets 401 with
 *   `error="insufficient_scope"` and the scope to ask for, so clients fetch a better token.
 */
export class AuthGate {
  constructor(
    private readonly client: Pick<AuthClient, "validate">,
    private readonly tokens: RegistryTokens,
    readonly service: string,
  ) {}

  /**
   * The `WWW-Authenticate` challenge: realm on the host the client used, the scope the request
   * needs (when it needs one), and `error="insufficient_scope"` when the token lacked it.
   */
  challenge(
    protocol: string,
    host: string | undefined,
    needed: ResourceAccess | null,
    insufficient = false,
  ): string {
    const realm = `${protocol}://${host ?? "localhost"}/auth/token`;
    const parts = [`realm="${realm}"`, `service="${this.service}"`];
    if (needed) parts.push(`scope="${formatScope(needed)}"`);
    if (insufficient) parts.push('error="insufficient_scope"');
    return `Bearer ${parts.join(",")}`;
  }

  /**
   * Verifies the bearer token and its access to the route. Throws UNAUTHORIZED (or TOKEN_INVALID
   * / TOKEN_EXPIRED, also 401) without a valid token, DENIED outside the tenant's namespace,
   * INSUFFICIENT_SCOPE (401) when the token lacks the action, UNSUPPORTED for a method the
   * endpoint does not serve. `mountFrom` is the source repository of a cross-repository mount.
   */
  async authorize(
    method: string,
    headers: IncomingHttpHeaders,
    route: V2Route | null,
    mountFrom?: string,
  ): Promise<Authorization> {
    const bearer = bearerToken(headers.authorization);
    if (!bearer)
      throw new TabbifyError("UNAUTHORIZED", "authentication required: get a token from /auth/token");
    const identity = await this.tokens.verify(bearer, { audience: this.service });
    const granted: Authorization = { identity, mountAllowed: false };
    if (route === null) return granted;
    const needed = requiredAccess(method, route);
    if (needed === null) return granted;
    const action = needed.actions[0]!;
    // Any valid token may list the catalog: the listing holds only what the token may pull.
    if (needed.type === catalogAccess.type && needed.name === catalogAccess.name) return granted;
    if (needed.type !== "repository") {
      if (allows(identity.access, needed.type, needed.name, action)) return granted;
      throw new TabbifyError("DENIED", `this token does not grant ${formatScope(needed)}`);
    }
    const shown = needed.name.slice(0, 300);
    if (!repositoryAllowed(identity.tenant, needed.name)) {
      throw new TabbifyError("DENIED", `repository ${shown} is outside your namespace`, { name: shown });
    }
    if (identity.scopes && !allows(identity.scopes, "repository", needed.name, action)) {
      // A robot limited below this: no token it can get would do, so it is refused, not challenged.
      throw new TabbifyError(
        "DENIED",
        `this robot token does not allow ${action} on ${shown}: it needs scope repository:${shown}:${action}`,
        { name: shown, scope: `repository:${shown}:${action}` },
      );
    }
    if (!allows(identity.access, "repository", needed.name, action)) {
      throw new TabbifyError(
        "INSUFFICIENT_SCOPE",
        `this token does not grant ${action} on ${shown}: ask /auth/token for scope repository:${shown}:${action}`,
        [{ Type: "repository", Name: shown, Action: action }],
      );
    }
    if (mountFrom !== undefined) {
      if (!repositoryAllowed(identity.tenant, mountFrom)) {
        throw new TabbifyError(
          "DENIED",
          `cannot mount from ${mountFrom.slice(0, 300)}: outside your namespace`,
          { from: mountFrom.slice(0, 300) },
        );
      }
      granted.mountAllowed = allows(identity.access, "repository", mountFrom, "pull");
    }
    return granted;
  }

  /**
   * `GET|POST /auth/token`: the tenant JWT comes as the Basic-auth password (docker login), as a
   * bearer, or (POST, OAuth2 password grant as containerd sends it) as the form's `password`.
   * `scope` comes in the query and, for a POST, in the form too; every one is parsed (a scope
   * that does not parse is SCOPE_INVALID, 400) and the grant keeps what the tenant may have.
   */
  async issue(
    method: string,
    headers: IncomingHttpHeaders,
    query: URLSearchParams,
    body: Readable,
  ): Promise<RegistryTokenGrant> {
    let jwt = credentialFromHeader(headers.authorization);
    const scopes = query.getAll("scope");
    if (method === "POST") {
      const form = new URLSearchParams(await readSmallBody(body));
      scopes.push(...form.getAll("scope"));
      if (!jwt) {
        const grant = form.get("grant_type");
        if (grant === "password") jwt = form.get("password") ?? undefined;
        else if (grant === "refresh_token") jwt = form.get("refresh_token") ?? undefined;
      }
    }
    if (!jwt) {
      throw new TabbifyError(
        "UNAUTHORIZED",
        "send your tenant token as the Basic-auth password (docker login -u x -p <token>) or as a bearer",
      );
    }
    const requested = parseScopes(scopes);
    const identity = await this.client.validate(jwt);
    const grant = grantFor(identity.tenant, requested);
    return this.tokens.mint(identity, {
      service: this.service,
      access: identity.scopes ? limitTo(grant, identity.scopes) : grant,
    });
  }
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
