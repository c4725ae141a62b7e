import assert from "node:assert/strict";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { ImmutableTags } from "./immutable-tags.js";

test("immutable tag rules match repo:tag globs, * staying inside one path component", () => {
  const rules = new ImmutableTags(["acme/*:v*", "globex/**:release-?"]);
  assert.equal(rules.match("acme/web", "v1.2"), "acme/*:v*");
  assert.equal(rules.match("acme/web", "latest"), undefined);
  assert.equal(rules.match("acme/team/web", "v1"), undefined, "* does not cross /");
  assert.equal(rules.match("acmex/web", "v1"), undefined);
  assert.equal(rules.match("globex/a/b", "release-1"), "globex/**:release-?");
  assert.equal(rules.match("globex/a/b", "release-10"), undefined);
  assert.equal(new ImmutableTags(["acme/web:1.0"]).match("acme/web", "1x0"), undefined, ". is literal");
  for (const bad of ["acme/*", ":v*", "acme/*:"]) {
    assert.throws(
      () => new ImmutableTags([bad]),
      (err: unknown) => isTabbifyError(err, "CONFIG_INVALID"),
    );
  }
});
