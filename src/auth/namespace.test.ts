import assert from "node:assert/strict";
import { test } from "node:test";
import { isValidTenant, namespaceCheck, repositoryAllowed } from "./namespace.js";

test("the seed's four namespace::check examples", () => {
  const table: [string, string, "allow" | "deny"][] = [
    ["acme", "/v2/acme/app/manifests/v1", "allow"],
    ["acme", "/v2/globex/app/manifests/v1", "deny"],
    ["acme", "/v2/", "allow"],
    ["acme", "/v2/_catalog", "deny"],
  ];
  for (const [tenant, path, want] of table)
    assert.equal(namespaceCheck(tenant, path), want, `${tenant} ${path}`);
});

test("namespaceCheck edge cases", () => {
  const table: [string, string, "allow" | "deny"][] = [
    // a tenant that is a prefix of another tenant
    ["acme", "/v2/acmeevil/x/manifests/v1", "deny"],
    ["acme", "/v2/acme-evil/x/manifests/v1", "deny"],
    ["acmeevil", "/v2/acme/x/manifests/v1", "deny"],
    // traversal and ambiguous segments
    ["acme", "/v2/acme/../globex/app/manifests/v1", "deny"],
    ["acme", "/v2/acme/./app/manifests/v1", "deny"],
    ["acme", "/v2/acme//app/manifests/v1", "deny"],
    ["acme", "/v2/acme/%2e%2e/globex/app/manifests/v1", "deny"],
    ["acme", "/v2/acme/x%2F..%2F..%2Fglobex/manifests/v1", "deny"],
    ["acme", "/v2/acme/x%5C..%5Cglobex/manifests/v1", "deny"],
    ["acme", "/v2/acme/app/blobs/%E0%A4%A", "deny"],
    ["..", "/v2/../acme/app/manifests/v1", "deny"],
    ["..", "/v2/", "deny"],
    // empty and malformed tenants grant nothing, not even the version check
    ["", "/v2/", "deny"],
    ["", "/v2//app/manifests/v1", "deny"],
    ["acme/x", "/v2/acme/x/app/manifests/v1", "deny"],
    ["\u212Acme", "/v2/kcme/app/manifests/v1", "deny"],
    // case: registry names are lowercase, the tenant is compared lowercased
    ["Acme", "/v2/acme/app/manifests/v1", "allow"],
    ["acme", "/v2/ACME/app/manifests/v1", "deny"],
    // the tenant's own name without a repository below it
    ["acme", "/v2/acme", "deny"],
    ["acme", "/v2/acme/", "deny"],
    // the rest of the API surface
    ["acme", "/v2/acme/app/blobs/uploads/", "allow"],
    ["acme", "/v2/acme/app/blobs/uploads//", "deny"],
    ["acme", "/v2/acme/app/blobs/uploads/8c1f4f0e-1b7a-4c43-9a3e", "allow"],
    ["acme", "/v2/acme/team/app/tags/list?n=10&last=v1", "allow"],
    ["acme", "/v2/acme/app/blobs/sha256%3Aabc", "allow"],
    ["acme", "/v2/?x=1", "allow"],
    ["acme", "/v2/_catalog?n=100", "deny"],
    ["acme", "/v2", "deny"],
    ["acme", "/auth/token", "deny"],
    ["acme", "/v3/acme/app/manifests/v1", "deny"],
    ["acme", "v2/acme/app/manifests/v1", "deny"],
    ["acme", "", "deny"],
  ];
  for (const [tenant, path, want] of table) {
    assert.equal(namespaceCheck(tenant, path), want, `${JSON.stringify(tenant)} ${path}`);
  }
});

test("repositoryAllowed (e.g. the source of a cross-repository mount)", () => {
  const table: [string, string, boolean][] = [
    ["acme", "acme/app", true],
    ["acme", "acme/team/app", true],
    ["Acme", "acme/app", true],
    ["acme", "globex/app", false],
    ["acme", "acmeevil/app", false],
    ["acme", "acme", false],
    ["acme", "acme/", false],
    ["acme", "acme/../globex/app", false],
    ["acme", "acme//app", false],
    ["acme", "acme/App", false],
    ["acme", `acme/${"a".repeat(260)}`, false],
    ["", "/app", false],
    ["..", "../app", false],
    ["acme/x", "acme/x/app", false],
  ];
  for (const [tenant, repository, want] of table) {
    assert.equal(repositoryAllowed(tenant, repository), want, `${JSON.stringify(tenant)} ${repository}`);
  }
});

test("valid tenants are single OCI path components", () => {
  for (const t of ["acme", "a", "acme.io", "my_team", "my__team", "my---team", "Acme", "team42"]) {
    assert.ok(isValidTenant(t), t);
  }
  for (const t of [
    "",
    "..",
    ".",
    "-a",
    "a-",
    "a_",
    "a___b",
    "a/b",
    "a b",
    "a:b",
    "é",
    "\u212A",
    "x".repeat(256),
  ]) {
    assert.ok(!isValidTenant(t), JSON.stringify(t));
  }
});
