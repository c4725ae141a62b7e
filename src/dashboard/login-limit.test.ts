import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LoginLimit, prefixOf } from "./login-limit.js";

describe("LoginLimit", () => {
  it("holds an address after its budget of failures until the window passes, then lets it try again", () => {
    let now = 1_000_000;
    const limit = new LoginLimit({ perAddress: 3, perPrefix: 100, windowMs: 60_000, now: () => now });
    for (let i = 0; i < 3; i++) {
      assert.equal(limit.retryAfter("10.0.0.1", `guess-${i}`), 0);
      limit.failed("10.0.0.1", `guess-${i}`);
      now += 1_000;
    }
    // The first failure (at 1,000,000) ages out at 1,060,000: 57 s from now.
    assert.equal(limit.retryAfter("10.0.0.1", "anything"), 57);
    assert.equal(limit.retryAfter("10.0.0.2", "anything"), 0, "another address is free");
    now += 57_000;
    assert.equal(limit.retryAfter("10.0.0.1", "anything"), 0);
  });

  it("a success clears its address; the credential's bucket counts across addresses", () => {
    const limit = new LoginLimit({ perAddress: 2, perPrefix: 3 });
    limit.failed("a", "tok-aaaa-1");
    limit.failed("a", "tok-aaaa-2");
    assert.ok(limit.retryAfter("a", "other-token") > 0);
    limit.succeeded("a");
    assert.equal(limit.retryAfter("a", "other-token"), 0);
    limit.failed("b", "tok-aaaa-3");
    assert.ok(limit.retryAfter("c", "tok-aaaa-9") > 0, "three failures on the tok-aaaa prefix");
    assert.equal(limit.retryAfter("c", "zzz-other"), 0);
  });

  it("buckets a JWT by its claimed tenant and subject, and never keeps token text", () => {
    const jwt = (claims: object) =>
      `eyJhbGciOiJFZERTQSJ9.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
    assert.equal(
      prefixOf(jwt({ network: "acme", sub: "a", jti: 1 })),
      prefixOf(jwt({ network: "acme", sub: "a" })),
    );
    assert.notEqual(
      prefixOf(jwt({ network: "acme", sub: "a" })),
      prefixOf(jwt({ network: "globex", sub: "a" })),
    );
    assert.match(prefixOf("node-key-secret-value"), /^[0-9a-f]{32}$/);
  });
});
