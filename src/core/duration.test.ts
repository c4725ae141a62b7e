import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDurationSeconds } from "./duration.js";

const any = { min: 0, max: Number.MAX_SAFE_INTEGER };

describe("parseDurationSeconds", () => {
  it("reads each unit and plain seconds", () => {
    assert.deepEqual(
      ["90s", "15m", "24h", "7d", "42", " 5m "].map((v) => parseDurationSeconds(v, "ttl", any)),
      [90, 900, 86_400, 604_800, 42, 300],
    );
  });

  it("refuses what is not a duration, naming the flag", () => {
    for (const bad of ["", "m", "-5s", "1.5h", "5w", "5 m", "1e3"]) {
      assert.throws(
        () => parseDurationSeconds(bad, "min-age", any),
        (err: Error & { code?: string }) => err.code === "USAGE" && err.message.includes("--min-age"),
        bad,
      );
    }
  });

  it("refuses a value outside the range, with the hint", () => {
    assert.throws(
      () => parseDurationSeconds("0", "ttl", { min: 1, max: 10, hint: "at most 10s" }),
      /at most 10s/,
    );
    assert.throws(() => parseDurationSeconds("11s", "ttl", { min: 1, max: 10 }), /--ttl/);
    assert.equal(parseDurationSeconds("10s", "ttl", { min: 1, max: 10 }), 10);
  });
});
