import { createHash } from "node:crypto";
import type { TenantIdentity } from "../auth/types.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import type { Caller } from "./apps-registry.js";
import type { NodeKeyCheck } from "./auth.js";

/**
 * Who a registry request speaks for, from its bearer token alone (never from the body): the node
 * key (admin, every tenant) or a tenant JWT (that tenant's apps only). The audit actor is derived
 * here too, so no route can make one up.
 */

export type TenantTokenVerifier = (token: string) => Promise<TenantIdentity>;

/** `node-key:<first 8 hex of sha256(key)>`: names the key without revealing it. */
export function nodeKeyActor(nodeKey: string): string {
  return `node-key:${createHash("sha256").update(nodeKey, "utf8").digest("hex").slice(0, 8)}`;
}

/** The actor of a request the node key check already let through. */
export function nodeKeyActorOf(authorization: string | undefined): string {
  return nodeKeyActor(bearerToken(authorization) ?? "");
}

export function tenantActor(identity: TenantIdentity): string {
  return `tenant:${identity.tenant.toLowerCase()}/${identity.subject}`;
}

export interface CallerResolverOptions {
  keyCheck: NodeKeyCheck;
  /** Present when the node can check tenant JWTs (it holds the auth service's public key). */
  verifyTenantToken?: TenantTokenVerifier;
}

export class CallerResolver {
  readonly #keyCheck: NodeKeyCheck;
  readonly #verify: TenantTokenVerifier | undefined;

  constructor(opts: CallerResolverOptions) {
    this.#keyCheck = opts.keyCheck;
    this.#verify = opts.verifyTenantToken;
  }

  /** Any caller: the node key, or a tenant token when the node can verify them. */
  async resolve(authorization: string | undefined): Promise<Caller> {
    const token = bearerToken(authorization);
    let keyFailure: unknown;
    try {
      this.#keyCheck.assert(authorization);
      return { actor: nodeKeyActor(token ?? "") };
    } catch (err) {
      keyFailure = err;
    }
    // Only a JWT-shaped bearer is worth a signature check; anything else is the key refusal.
    if (token === undefined || this.#verify === undefined || token.split(".").length !== 3) throw keyFailure;
    let identity: TenantIdentity;
    try {
      identity = await this.#verify(token);
    } catch (err) {
      if (err instanceof TabbifyError && (err.code === "TOKEN_INVALID" || err.code === "TOKEN_EXPIRED")) {
        throw new TabbifyError(
          "UNAUTHORIZED",
          `the bearer token is neither this node's key nor a valid tenant token (${err.message})`,
        );
      }
      throw err;
    }
    return { actor: tenantActor(identity), tenant: identity.tenant.toLowerCase() };
  }

  /** The node key only (whole-registry and whole-chain routes). */
  async admin(authorization: string | undefined): Promise<Caller> {
    const caller = await this.resolve(authorization);
    if (caller.tenant !== undefined) {
      throw new TabbifyError(
        "FORBIDDEN",
        "this route takes the node key; a tenant token reaches only its own apps",
      );
    }
    return caller;
  }
}
