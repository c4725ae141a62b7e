import { createHash } from "node:crypto";

/**
 * How many failed dashboard logins the node takes before it stops checking: counted per client
 * address and per credential prefix, over a sliding window. While either count is over its
 * budget, a login is answered 429 with Retry-After before the token is looked at, so guessing
 * costs the guesser time and the node nothing. A successful login clears its address's count.
 *
 * The prefix bucket catches one guesser spread over many addresses: for a JWT it is the claims
 * the token says it is for (its `network`, the tenant, and subject, unverified: a forged token still counts against
 * the name it forges), for anything else its first 8 characters. Its budget is larger than an
 * address's, since honest users of one tenant share it.
 */

export interface LoginLimitOptions {
  /** Failed logins one address may make per window. Default 10. */
  perAddress?: number;
  /** Failed logins one credential prefix may take per window. Default 30. */
  perPrefix?: number;
  /** Default 60 s. */
  windowMs?: number;
  now?: () => number;
}

/** Buckets kept at most; the oldest go first, so a flood of addresses cannot grow memory. */
const MAX_BUCKETS = 10_000;

export class LoginLimit {
  readonly #failures = new Map<string, number[]>();
  readonly #perAddress: number;
  readonly #perPrefix: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(opts: LoginLimitOptions = {}) {
    this.#perAddress = opts.perAddress ?? 10;
    this.#perPrefix = opts.perPrefix ?? 30;
    this.#windowMs = opts.windowMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Seconds until a login from `address` with `token` may be tried again; 0 when it may now. */
  retryAfter(address: string, token: string): number {
    const wait = Math.max(
      this.#waitMs(`a:${address}`, this.#perAddress),
      this.#waitMs(`p:${prefixOf(token)}`, this.#perPrefix),
    );
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  failed(address: string, token: string): void {
    this.#add(`a:${address}`);
    this.#add(`p:${prefixOf(token)}`);
  }

  succeeded(address: string): void {
    this.#failures.delete(`a:${address}`);
  }

  #recent(key: string): number[] {
    const since = this.#now() - this.#windowMs;
    const kept = (this.#failures.get(key) ?? []).filter((t) => t > since);
    if (kept.length === 0) this.#failures.delete(key);
    else this.#failures.set(key, kept);
    return kept;
  }

  #waitMs(key: string, budget: number): number {
    const recent = this.#recent(key);
    if (recent.length < budget) return 0;
    // The window reopens when the oldest failure that keeps the count at its budget ages out.
    const oldest = recent[recent.length - budget] ?? this.#now();
    return oldest + this.#windowMs - this.#now();
  }

  #add(key: string): void {
    const recent = this.#recent(key);
    if (!this.#failures.has(key) && this.#failures.size >= MAX_BUCKETS) {
      const first = this.#failures.keys().next().value;
      if (first !== undefined) this.#failures.delete(first);
    }
    // Only what the budget can need is kept per bucket.
    this.#failures.set(key, [...recent, this.#now()].slice(-Math.max(this.#perAddress, this.#perPrefix)));
  }
}

/** The bucket a credential counts against; hashed so the table never holds token text. */
export function prefixOf(token: string): string {
  const t = token.trim();
  const parts = t.split(".");
  let name = t.slice(0, 8);
  if (parts.length === 3 && parts[1]) {
    try {
      const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as Record<
        string,
        unknown
      >;
      name = `jwt:${String(claims.network ?? "")}/${String(claims.sub ?? "")}`;
    } catch {
      name = t.slice(0, 8);
    }
  }
  return createHash("sha256").update(name).digest("hex").slice(0, 32);
}
