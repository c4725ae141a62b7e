import type { ResourceAccess } from "./registry-scope.js";

/** Who a validated tenant token speaks for. */
export interface TenantIdentity {
  /** The token's `sub`: the person or machine the token was issued to. */
  subject: string;
  /** The namespace owner: the `network` claim, else `sub` (the seed's rule). */
  tenant: string;
  /** The raw `network` claim when the token carries one. */
  network?: string;
  /** Unix seconds. */
  expiresAt: number;
  /**
   * A robot token's limits (the JWT's `access` claim, Docker token format): the registry grants
   * no more than these. Absent: the whole tenant namespace.
   */
  scopes?: ResourceAccess[];
}
