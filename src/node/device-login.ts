import { createHash, randomBytes, randomInt } from "node:crypto";
import { TabbifyError } from "../core/errors.js";

/**
 * The device authorization grant (RFC 8628) as the node keeps it: pending grants in memory, keyed
 * by the SHA-256 of their device code and of their normalized user code (neither code is ever
 * stored or logged in the clear). A grant lives `expiresInSecs`; a node restart forgets pending
 * grants, and `tcli login` then says to start again.
 *
 * User codes are 8 letters of RFC 8628 §6.1's 20-consonant alphabet (≈34.5 bits), shown as
 * XXXX-XXXX and matched case-insensitively without the dash. Approving is the only way to guess
 * one, it needs a logged-in caller, and each caller gets `maxFailedApprovals` wrong codes per
 * `failureWindowMs` (§5.1).
 */

export const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";
export const DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code";

export interface DeviceGrantOptions {
  /** Seconds a client waits between polls (RFC default 5). */
  intervalSecs?: number;
  /** Seconds a grant stays redeemable. Default 600. */
  expiresInSecs?: number;
  /** Pending grants held at once; more answer 503. Default 1000. */
  maxPending?: number;
  /** Pending grants one requester (remote address) may hold. Default 10. */
  maxPendingPerRequester?: number;
  /** Wrong user codes one approver may send per window. Default 5. */
  maxFailedApprovals?: number;
  failureWindowMs?: number;
  now?: () => number;
}

/** What approving attaches to a grant: the token the device will receive. */
export interface DeviceApproval {
  accessToken: string;
  expiresInSecs: number;
  tenant: string;
  subject: string;
}

interface Grant {
  userKey: string;
  requester: string;
  expiresAt: number;
  intervalMs: number;
  lastPollAt: number | undefined;
  /** `approving` while the token is minted: a second approval of the same code loses. */
  state: "pending" | "approving" | "approved" | "denied";
  approval?: DeviceApproval;
}

/** The RFC 8628 §3.5 / RFC 6749 §5.2 error codes the token endpoint answers. */
export type DeviceTokenError =
  | "authorization_pending"
  | "slow_down"
  | "access_denied"
  | "expired_token"
  | "invalid_grant";

export type PollResult =
  | { ok: true; approval: DeviceApproval }
  | { ok: false; error: DeviceTokenError; interval?: number };

export interface IssuedGrant {
  device_code: string;
  user_code: string;
  expires_in: number;
  interval: number;
}

function sha256(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** `abcd-efgh`, `ABCDEFGH`, ` abcd efgh ` → `ABCDEFGH`; anything else → undefined. */
export function normalizeUserCode(raw: string): string | undefined {
  const code = raw.toUpperCase().replace(/[\s-]/g, "");
  if (code.length !== 8) return undefined;
  for (const c of code) if (!USER_CODE_ALPHABET.includes(c)) return undefined;
  return code;
}

export class DeviceGrants {
  readonly #byDevice = new Map<string, Grant>();
  readonly #byUser = new Map<string, string>();
  readonly #failures = new Map<string, number[]>();
  readonly #intervalSecs: number;
  readonly #expiresInSecs: number;
  readonly #maxPending: number;
  readonly #maxPerRequester: number;
  readonly #maxFailed: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(opts: DeviceGrantOptions = {}) {
    this.#intervalSecs = opts.intervalSecs ?? 5;
    this.#expiresInSecs = opts.expiresInSecs ?? 600;
    this.#maxPending = opts.maxPending ?? 1000;
    this.#maxPerRequester = opts.maxPendingPerRequester ?? 10;
    this.#maxFailed = opts.maxFailedApprovals ?? 5;
    this.#windowMs = opts.failureWindowMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  get pending(): number {
    this.#sweep();
    return this.#byDevice.size;
  }

  /** §3.1–3.2: a new grant. The device code is 256 random bits; the user code is unused. */
  issue(requester = ""): IssuedGrant {
    this.#sweep();
    let mine = 0;
    for (const g of this.#byDevice.values()) if (g.requester === requester) mine += 1;
    if (mine >= this.#maxPerRequester) {
      throw new TabbifyError(
        "TOO_MANY_ATTEMPTS",
        `this address holds ${mine} pending device logins: finish or let them expire first`,
      );
    }
    if (this.#byDevice.size >= this.#maxPending) {
      throw new TabbifyError(
        "DEVICE_LOGIN_BUSY",
        "too many device logins are pending on this node: try again in a few minutes",
      );
    }
    let userCode: string;
    do {
      userCode = Array.from({ length: 8 }, () => USER_CODE_ALPHABET[randomInt(20)]).join("");
    } while (this.#byUser.has(sha256(userCode)));
    const deviceCode = randomBytes(32).toString("base64url");
    const deviceKey = sha256(deviceCode);
    const userKey = sha256(userCode);
    this.#byDevice.set(deviceKey, {
      userKey,
      requester,
      expiresAt: this.#now() + this.#expiresInSecs * 1000,
      intervalMs: this.#intervalSecs * 1000,
      lastPollAt: undefined,
      state: "pending",
    });
    this.#byUser.set(userKey, deviceKey);
    return {
      device_code: deviceCode,
      user_code: `${userCode.slice(0, 4)}-${userCode.slice(4)}`,
      expires_in: this.#expiresInSecs,
      interval: this.#intervalSecs,
    };
  }

  /**
   * §3.4–3.5: one poll. Faster than the interval answers `slow_down` and adds 5 s to it; an
   * approved grant hands out its token once and is gone (a replay is `invalid_grant`).
   */
  poll(deviceCode: string): PollResult {
    const deviceKey = sha256(deviceCode);
    const grant = this.#byDevice.get(deviceKey);
    if (!grant) return { ok: false, error: "invalid_grant" };
    const now = this.#now();
    if (now >= grant.expiresAt) {
      this.#drop(deviceKey, grant);
      return { ok: false, error: "expired_token" };
    }
    if (grant.state === "denied") {
      this.#drop(deviceKey, grant);
      return { ok: false, error: "access_denied" };
    }
    const tooSoon = grant.lastPollAt !== undefined && now - grant.lastPollAt < grant.intervalMs;
    grant.lastPollAt = now;
    if (tooSoon) {
      grant.intervalMs += 5000;
      return { ok: false, error: "slow_down", interval: grant.intervalMs / 1000 };
    }
    if (grant.state !== "approved") return { ok: false, error: "authorization_pending" };
    this.#drop(deviceKey, grant);
    return { ok: true, approval: grant.approval as DeviceApproval };
  }

  /**
   * An approver's answer to a user code. `approver` names the caller for the failure budget;
   * `approval` is built only once the code is known to be pending (it mints the token).
   */
  async decide(
    approver: string,
    rawUserCode: string,
    approval: (() => Promise<DeviceApproval>) | "deny",
  ): Promise<void> {
    this.#sweep();
    const failures = (this.#failures.get(approver) ?? []).filter((t) => this.#now() - t < this.#windowMs);
    if (failures.length >= this.#maxFailed) {
      this.#failures.set(approver, failures);
      throw new TabbifyError(
        "TOO_MANY_ATTEMPTS",
        `too many unknown user codes from this caller: wait ${Math.ceil(this.#windowMs / 1000)} s`,
      );
    }
    const code = normalizeUserCode(rawUserCode);
    const deviceKey = code === undefined ? undefined : this.#byUser.get(sha256(code));
    const grant = deviceKey === undefined ? undefined : this.#byDevice.get(deviceKey);
    if (grant?.state !== "pending") {
      failures.push(this.#now());
      this.#failures.set(approver, failures);
      throw new TabbifyError(
        "USER_CODE_NOT_FOUND",
        "no pending device login has this code (it may have expired, or been approved already): check the code `tcli login` printed",
      );
    }
    if (approval === "deny") {
      grant.state = "denied";
      return;
    }
    grant.state = "approving";
    try {
      grant.approval = await approval();
    } catch (err) {
      grant.state = "pending";
      throw err;
    }
    grant.state = "approved";
  }

  #drop(deviceKey: string, grant: Grant): void {
    this.#byDevice.delete(deviceKey);
    this.#byUser.delete(grant.userKey);
  }

  #sweep(): void {
    const now = this.#now();
    for (const [key, grant] of this.#byDevice) if (now >= grant.expiresAt) this.#drop(key, grant);
  }
}
