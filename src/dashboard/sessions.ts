import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * The dashboard's sessions, in the node's memory. The browser holds a random session id in an
 * HttpOnly cookie; the node keys its table by the id's SHA-256, so the table never holds a live
 * cookie value. Each entry keeps the token the user logged in with, which the node replays as the
 * request's bearer: the API then checks it exactly as it checks `tcli`'s (a tenant token that has
 * expired stops working here too). A restart logs everyone out.
 *
 * The CSRF token is HMAC(node secret, session id): nothing more to store, unguessable without the
 * cookie, and compared in constant time over equal-length digests.
 */

export const SESSION_TTL_MS = 12 * 3600 * 1000;
const MAX_SESSIONS = 10_000;

export interface DashboardSession {
  /** The node key or tenant token the user pasted; never leaves the node. */
  token: string;
  actor: string;
  tenant: string | null;
  expiresAt: number;
}

export class DashboardSessions {
  readonly #byDigest = new Map<string, DashboardSession>();
  readonly #secret = randomBytes(32);
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(opts: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.ttlMs ?? SESSION_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** A new session; returns the id for the cookie. */
  create(entry: Omit<DashboardSession, "expiresAt">): string {
    this.#prune();
    if (this.#byDigest.size >= MAX_SESSIONS) {
      // The oldest goes first: Maps iterate in insertion order.
      const oldest = this.#byDigest.keys().next().value;
      if (oldest !== undefined) this.#byDigest.delete(oldest);
    }
    const id = randomBytes(32).toString("base64url");
    this.#byDigest.set(digestOf(id), { ...entry, expiresAt: this.#now() + this.#ttlMs });
    return id;
  }

  find(id: string | undefined): DashboardSession | undefined {
    if (!id) return undefined;
    const key = digestOf(id);
    const found = this.#byDigest.get(key);
    if (!found) return undefined;
    if (found.expiresAt <= this.#now()) {
      this.#byDigest.delete(key);
      return undefined;
    }
    return found;
  }

  end(id: string | undefined): void {
    if (id) this.#byDigest.delete(digestOf(id));
  }

  csrfTokenFor(id: string): string {
    return createHmac("sha256", this.#secret).update(`csrf:${id}`).digest("base64url");
  }

  /** Constant time: both sides are hashed to equal-length digests first. */
  csrfMatches(id: string, presented: string | undefined): boolean {
    if (!presented) return false;
    const want = createHash("sha256").update(this.csrfTokenFor(id)).digest();
    const got = createHash("sha256").update(presented).digest();
    return timingSafeEqual(want, got);
  }

  #prune(): void {
    const now = this.#now();
    for (const [key, s] of this.#byDigest) if (s.expiresAt <= now) this.#byDigest.delete(key);
  }
}

function digestOf(id: string): string {
  return createHash("sha256").update(id).digest("hex");
}
