import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkGitRef } from "./git-ref.js";

describe("checkGitRef", () => {
  it("accepts branches, tags and shas", () => {
    for (const ok of [
      "main",
      "feature/x-1",
      "v1.2.3",
      "release_2",
      "0123456789abcdef0123456789abcdef01234567",
    ]) {
      assert.equal(checkGitRef(ok), undefined, ok);
    }
  });

  it("refuses options, traversal and what git refuses", () => {
    for (const bad of [
      "",
      "-b",
      "--upload-pack=x",
      "a..b",
      "a//b",
      "/main",
      "main/",
      "main.lock",
      "main branch",
      "main;rm",
      "ma\nin",
      "HEAD@{1}",
      "a~1",
    ]) {
      assert.notEqual(checkGitRef(bad), undefined, JSON.stringify(bad));
    }
  });
});
