import assert from "node:assert/strict";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { accessClaim, allows, formatScope, grantFor, maxScopes, parseScopes } from "./registry-scope.js";

test("parses the Docker token spec's scope grammar: repeated, space-separated, names with a port", () => {
  assert.deepEqual(
    parseScopes(["repository:acme/app:pull,push", "repository:acme/b:pull registry:catalog:*"]),
    [
      { type: "repository", name: "acme/app", actions: ["pull", "push"] },
      { type: "repository", name: "acme/b", actions: ["pull"] },
      { type: "registry", name: "catalog", actions: ["*"] },
    ],
  );
  assert.deepEqual(parseScopes(["repository(plugin):localhost:5000/acme/x:pull"]), [
    { type: "repository(plugin)", name: "localhost:5000/acme/x", actions: ["pull"] },
  ]);
  assert.deepEqual(parseScopes([]), []);
  assert.equal(
    formatScope({ type: "repository", name: "acme/app", actions: ["pull", "push"] }),
    "repository:acme/app:pull,push",
  );
});

test("a scope that does not parse is SCOPE_INVALID, and so is a flood of them", () => {
  for (const bad of [
    "repository",
    "repository:acme/app",
    ":acme/app:pull",
    "repository::pull",
    "Repo:acme/x:pull",
    "repository:acme/x:PULL",
  ]) {
    assert.throws(
      () => parseScopes([bad]),
      (err) => isTabbifyError(err, "SCOPE_INVALID"),
      bad,
    );
  }
  const many = Array.from({ length: maxScopes + 1 }, (_, i) => `repository:acme/r${i}:pull`);
  assert.throws(
    () => parseScopes(many),
    (err) => isTabbifyError(err, "SCOPE_INVALID"),
  );
});

test("a tenant is granted what it may have of what it asked; the rest is dropped, not refused", () => {
  const asked = parseScopes([
    "repository:acme/app:pull,push",
    "repository:acme/app:delete,bogus",
    "repository:globex/app:pull",
    "repository:acme:pull",
    "repository:ACME/app:pull",
    "registry:catalog:*",
    "repository(plugin):acme/x:pull",
    "repository:acme/other:*",
  ]);
  assert.deepEqual(grantFor("acme", asked), [
    { type: "repository", name: "acme/app", actions: ["pull", "push", "delete"] },
    { type: "repository", name: "acme/other", actions: ["pull", "push", "delete"] },
  ]);
  assert.deepEqual(grantFor("globex", parseScopes(["repository:acme/app:pull,push"])), []);
});

test("allows() checks type, name and action", () => {
  const access = grantFor("acme", parseScopes(["repository:acme/app:pull"]));
  assert.ok(allows(access, "repository", "acme/app", "pull"));
  assert.ok(!allows(access, "repository", "acme/app", "push"));
  assert.ok(!allows(access, "repository", "acme/app2", "pull"));
  assert.ok(!allows(access, "registry", "acme/app", "pull"));
  assert.ok(allows([{ type: "registry", name: "catalog", actions: ["*"] }], "registry", "catalog", "*"));
});

test("an access claim is read back only when it has the Docker shape", () => {
  assert.deepEqual(accessClaim(undefined), []);
  assert.deepEqual(accessClaim([{ type: "repository", name: "a/b", actions: ["pull"] }]), [
    { type: "repository", name: "a/b", actions: ["pull"] },
  ]);
  for (const bad of [
    "x",
    {},
    [1],
    [{ type: "repository", name: "a/b", actions: "pull" }],
    [{ type: 1, name: "a", actions: [] }],
  ]) {
    assert.equal(accessClaim(bad), undefined);
  }
});
