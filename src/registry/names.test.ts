import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseRange } from "./http-ranges.js";
import { isValidName, isValidTag, parseV2Path } from "./names.js";

describe("repository names", () => {
  it("accepts the spec grammar", () => {
    for (const name of ["a", "acme/app", "a-b/c.d/e_f", "a__b", "a--b", "0/1/2", `${"a".repeat(255)}`]) {
      assert.ok(isValidName(name), name);
    }
  });
  it("refuses uppercase, dot segments, empty components, bad separators and > 255 chars", () => {
    for (const name of [
      "",
      "A",
      "acme/App",
      "a/../b",
      "..",
      "a/./b",
      "a//b",
      "/a",
      "a/",
      "-a",
      "a-",
      "a___b",
      "a..b",
      "a/_x",
      "a".repeat(256),
    ]) {
      assert.ok(!isValidName(name), name);
    }
  });
});

describe("tags", () => {
  it("follows [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", () => {
    assert.ok(isValidTag("latest"));
    assert.ok(isValidTag("_v1.0-rc"));
    assert.ok(isValidTag("a".repeat(128)));
    assert.ok(!isValidTag("a".repeat(129)));
    assert.ok(!isValidTag(".hidden"));
    assert.ok(!isValidTag("-x"));
    assert.ok(!isValidTag("a/b"));
  });
});

describe("the /v2 path parser", () => {
  it("splits names with slashes from the endpoint at the end", () => {
    assert.deepEqual(parseV2Path("/v2/"), { kind: "base" });
    assert.deepEqual(parseV2Path("/v2"), { kind: "base" });
    assert.deepEqual(parseV2Path("/v2/_catalog"), { kind: "catalog" });
    assert.deepEqual(parseV2Path("/v2/a/b/c/tags/list"), { kind: "tags", name: "a/b/c" });
    assert.deepEqual(parseV2Path("/v2/a/b/manifests/v1"), { kind: "manifest", name: "a/b", reference: "v1" });
    assert.deepEqual(parseV2Path("/v2/a/blobs/uploads/"), { kind: "uploads", name: "a" });
    assert.deepEqual(parseV2Path("/v2/a/blobs/uploads"), { kind: "uploads", name: "a" });
    assert.deepEqual(parseV2Path("/v2/a/blobs/uploads/123"), { kind: "upload", name: "a", id: "123" });
    assert.deepEqual(parseV2Path("/v2/a/blobs/sha256:ab"), { kind: "blob", name: "a", digest: "sha256:ab" });
    assert.deepEqual(parseV2Path("/v2/a/referrers/sha256:ab"), {
      kind: "referrers",
      name: "a",
      digest: "sha256:ab",
    });
    // A repository may itself be called "blobs" or "manifests".
    assert.deepEqual(parseV2Path("/v2/blobs/manifests/manifests/x"), {
      kind: "manifest",
      name: "blobs/manifests",
      reference: "x",
    });
    assert.equal(parseV2Path("/v2/a/unknown"), null);
    assert.equal(parseV2Path("/other"), null);
  });
  it("decodes only the reference, so an encoded name stays invalid", () => {
    assert.deepEqual(parseV2Path("/v2/a/blobs/sha256%3Aab"), {
      kind: "blob",
      name: "a",
      digest: "sha256:ab",
    });
    const route = parseV2Path("/v2/a%2Fb/tags/list");
    assert.deepEqual(route, { kind: "tags", name: "a%2Fb" });
    assert.ok(route && "name" in route && !isValidName(route.name));
  });
});

describe("blob Range parsing", () => {
  it("serves single ranges, clamps the end, and refuses ranges past the end", () => {
    assert.equal(parseRange(undefined, 10), undefined);
    assert.deepEqual(parseRange("bytes=0-0", 10), { start: 0, end: 0 });
    assert.deepEqual(parseRange("bytes=5-100", 10), { start: 5, end: 9 });
    assert.deepEqual(parseRange("bytes=-4", 10), { start: 6, end: 9 });
    assert.deepEqual(parseRange("bytes=-40", 10), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=3-", 10), { start: 3, end: 9 });
    assert.equal(parseRange("bytes=0-1,3-4", 10), undefined, "multi-range: whole blob");
    assert.equal(parseRange("items=0-1", 10), undefined);
    assert.throws(() => parseRange("bytes=10-", 10), { code: "RANGE_INVALID" });
    assert.throws(() => parseRange("bytes=-0", 10), { code: "RANGE_INVALID" });
    assert.throws(() => parseRange("bytes=0-", 0), { code: "RANGE_INVALID" });
  });
});
