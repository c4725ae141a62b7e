import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isLowercaseUuid, isUuid } from "./uuid.js";

const lower = "0b6f2c1e-8f3a-4d5b-9c7e-1a2b3c4d5e6f";

describe("uuid shape", () => {
  it("accepts a UUID in either case; lowercase only where asked", () => {
    assert.equal(isUuid(lower), true);
    assert.equal(isUuid(lower.toUpperCase()), true);
    assert.equal(isLowercaseUuid(lower), true);
    assert.equal(isLowercaseUuid(lower.toUpperCase()), false);
  });

  it("refuses what only looks close", () => {
    for (const bad of [
      "",
      `${lower}\n`,
      ` ${lower}`,
      lower.replace(/-/g, ""),
      `${lower}0`,
      lower.replace("0", "g"),
      "../../etc/passwd",
      42,
      undefined,
    ]) {
      assert.equal(isUuid(bad), false, String(bad));
    }
  });
});
