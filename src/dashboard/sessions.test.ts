import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cookieValue, withoutCookie } from "./cookies.js";
import { DashboardSessions } from "./sessions.js";

describe("dashboard sessions", () => {
  it("finds a session by its id until it expires, and never by anything else", () => {
    let now = 1_000;
    const sessions = new DashboardSessions({ ttlMs: 60_000, now: () => now });
    const id = sessions.create({ token: "t", actor: "a", tenant: "acme" });
    assert.equal(sessions.find(id)?.tenant, "acme");
    assert.equal(sessions.find(`${id}x`), undefined);
    assert.equal(sessions.find(undefined), undefined);
    now += 60_000;
    assert.equal(sessions.find(id), undefined, "expired");
  });

  it("binds the CSRF token to its session", () => {
    const sessions = new DashboardSessions();
    const a = sessions.create({ token: "t", actor: "a", tenant: null });
    const b = sessions.create({ token: "t", actor: "a", tenant: null });
    assert.equal(sessions.csrfMatches(a, sessions.csrfTokenFor(a)), true);
    assert.equal(sessions.csrfMatches(a, sessions.csrfTokenFor(b)), false);
    assert.equal(sessions.csrfMatches(a, undefined), false);
    assert.equal(sessions.csrfMatches(a, ""), false);
    sessions.end(a);
    assert.equal(sessions.find(a), undefined);
  });

  it("reads and strips one cookie from a Cookie header", () => {
    const header = "theme=dark; tabbify_session=abc; other=1";
    assert.equal(cookieValue(header, "tabbify_session"), "abc");
    assert.equal(cookieValue(header, "tabbify"), undefined);
    assert.equal(withoutCookie(header, "tabbify_session"), "theme=dark; other=1");
    assert.equal(withoutCookie("tabbify_session=abc", "tabbify_session"), undefined);
    assert.equal(withoutCookie("my_tabbify_session=1", "tabbify_session"), "my_tabbify_session=1");
  });
});
