import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { DeviceGrants, normalizeUserCode } from "./device-login.js";

const approval = async () => ({ accessToken: "jwt", expiresInSecs: 60, tenant: "acme", subject: "dev" });

describe("device grants (RFC 8628)", () => {
  it("issues 8-letter codes from the 20-consonant alphabet and 256-bit device codes", () => {
    const grants = new DeviceGrants();
    const seen = new Set<string>();
    for (let i = 0; i < 200; i += 1) {
      const g = grants.issue(`requester-${i}`);
      assert.match(g.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
      assert.equal(Buffer.from(g.device_code, "base64url").length, 32);
      seen.add(g.user_code);
    }
    assert.equal(seen.size, 200);
    assert.equal(normalizeUserCode(" bcdf-ghjk "), "BCDFGHJK");
    assert.equal(normalizeUserCode("BCDF-GHJA"), undefined, "vowels are not in the alphabet");
  });

  it("answers pending, slow_down (+5 s each time), then the token once", async () => {
    let now = 0;
    const grants = new DeviceGrants({ intervalSecs: 5, now: () => now });
    const g = grants.issue();
    assert.deepEqual(grants.poll(g.device_code), { ok: false, error: "authorization_pending" });
    now += 1000;
    assert.deepEqual(grants.poll(g.device_code), { ok: false, error: "slow_down", interval: 10 });
    now += 6000;
    assert.deepEqual(grants.poll(g.device_code), { ok: false, error: "slow_down", interval: 15 });
    now += 15_000;
    assert.deepEqual(grants.poll(g.device_code), { ok: false, error: "authorization_pending" });
    await grants.decide("admin", g.user_code.toLowerCase(), approval);
    now += 15_000;
    const redeemed = grants.poll(g.device_code);
    assert.equal(redeemed.ok, true);
    now += 15_000;
    assert.deepEqual(grants.poll(g.device_code), { ok: false, error: "invalid_grant" });
    assert.equal(grants.pending, 0);
  });

  it("expires grants, and a denied grant answers access_denied", async () => {
    let now = 0;
    const grants = new DeviceGrants({ expiresInSecs: 60, now: () => now });
    const late = grants.issue();
    const refused = grants.issue();
    await grants.decide("admin", refused.user_code, "deny");
    assert.deepEqual(grants.poll(refused.device_code), { ok: false, error: "access_denied" });
    now += 60_000;
    assert.deepEqual(grants.poll(late.device_code), { ok: false, error: "expired_token" });
    await assert.rejects(grants.decide("admin", late.user_code, approval), (e) =>
      isTabbifyError(e, "USER_CODE_NOT_FOUND"),
    );
  });

  it("caps wrong codes per approver, even when the next guess is right", async () => {
    let now = 0;
    const grants = new DeviceGrants({ maxFailedApprovals: 3, failureWindowMs: 60_000, now: () => now });
    const g = grants.issue();
    for (let i = 0; i < 3; i += 1) {
      await assert.rejects(grants.decide("mallory", "BBBB-BBBB", approval), (e) =>
        isTabbifyError(e, "USER_CODE_NOT_FOUND"),
      );
    }
    await assert.rejects(grants.decide("mallory", g.user_code, approval), (e) =>
      isTabbifyError(e, "TOO_MANY_ATTEMPTS"),
    );
    await grants.decide("alice", g.user_code, approval);
    now += 60_000;
    await assert.rejects(grants.decide("mallory", "BBBB-BBBB", approval), (e) =>
      isTabbifyError(e, "USER_CODE_NOT_FOUND"),
    );
  });

  it("holds a bounded number of pending grants, and fewer per requester", () => {
    const grants = new DeviceGrants({ maxPending: 3, maxPendingPerRequester: 2 });
    grants.issue("10.0.0.1");
    grants.issue("10.0.0.1");
    assert.throws(
      () => grants.issue("10.0.0.1"),
      (e) => isTabbifyError(e, "TOO_MANY_ATTEMPTS"),
    );
    grants.issue("10.0.0.2");
    assert.throws(
      () => grants.issue("10.0.0.3"),
      (e) => isTabbifyError(e, "DEVICE_LOGIN_BUSY"),
    );
  });
});
