import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkGitRef, GIT_REF_PATTERN } from "./git-ref.js";

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

  it("GIT_REF_PATTERN, the schemas' form, agrees with checkGitRef", () => {
    const pattern = new RegExp(GIT_REF_PATTERN, "u");
    for (const ref of [
      "main",
      "feature/x-1",
      "v1.2.3",
      "a",
      "a.b/c_d",
      "",
      "-b",
      "a..b",
      "a//b",
      "/main",
      "main/",
      "main.lock",
      "main.locks",
      "main branch",
      "ma\nin",
      "HEAD@{1}",
      "a~1",
      ".",
      "x/-y",
    ]) {
      assert.equal(pattern.test(ref), checkGitRef(ref) === undefined, JSON.stringify(ref));
    }
  });
});
