import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bearerToken } from "./bearer.js";

describe("bearerToken", () => {
  it("reads the token, whatever the scheme's case and the blanks around it", () => {
    assert.equal(bearerToken("Bearer abc.def"), "abc.def");
    assert.equal(bearerToken("bearer \tabc  "), "abc");
    assert.equal(bearerToken("BEARER abc"), "abc");
  });

  it("refuses everything else", () => {
    for (const bad of [
      undefined,
      "",
      "Bearer",
      "Bearer ",
      "Basic abc",
      "Bearer a b",
      "Bearerabc",
      "x Bearer abc",
    ]) {
      assert.equal(bearerToken(bad), undefined, String(bad));
    }
  });
});
