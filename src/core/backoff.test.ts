import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelay } from "./backoff.js";

describe("backoffDelay", () => {
  it("starts at the base and doubles each attempt", () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((a) => backoffDelay(a, 100, 10_000)),
      [100, 200, 400, 800],
    );
  });

  it("never exceeds the cap, however many attempts", () => {
    assert.equal(backoffDelay(8, 100, 5_000), 5_000);
    assert.equal(backoffDelay(10_000, 1_000, 60_000), 60_000);
    assert.ok(Number.isFinite(backoffDelay(Number.MAX_SAFE_INTEGER, 1, Number.POSITIVE_INFINITY)));
  });

  it("treats an attempt below 1 as the first", () => {
    assert.equal(backoffDelay(0, 250, 1_000), 250);
  });
});
