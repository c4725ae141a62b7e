import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { type App, branchProblem, type NormalizeContext, normalizeApp } from "./apps-schema.js";

const servers = { allowed: () => new Set(["sup-a", "sup-b"]) };
const now = new Date("2026-03-04T05:06:07.000Z");
const ctx = (extra: Partial<NormalizeContext> = {}): NormalizeContext => ({ servers, now, ...extra });

function refused(input: unknown, field: string, rule: RegExp, extra: Partial<NormalizeContext> = {}): void {
  assert.throws(
    () => normalizeApp(input, ctx(extra)),
    (err: unknown) => {
      assert.ok(isTabbifyError(err, "APP_INVALID"), `APP_INVALID, got ${String(err)}`);
      assert.equal((err.detail as { field: string }).field, field);
      assert.match(err.message, rule);
      assert.ok(err.message.startsWith(`${field}: `), "the message names the field first");
      return true;
    },
  );
}

describe("app documents", () => {
  it("fills every default from name and tenant alone", () => {
    const app = normalizeApp({ name: "web", tenant: "Acme" }, ctx());
    assert.match(app.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, "a fresh UUID v7");
    const { uuid: _uuid, ...rest } = app;
    assert.deepEqual(rest, {
      name: "web",
      tenant: "acme",
      description: "",
      repo_url: null,
      branch: "main",
      servers: [],
      runtime: "docker",
      build: { kind: "docker", context: ".", dockerfile: "Dockerfile", builder: null },
      env: [],
      environments: ["prod"],
      labels: {},
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
    });
  });

  it("gives a repo's app the UUID v5 of its canonical URL, as deploys do", () => {
    const a = normalizeApp({ name: "web", tenant: "acme", repo_url: "https://github.com/o/r.git" }, ctx());
    const b = normalizeApp({ name: "web", tenant: "acme", repo_url: "https://github.com/o/r" }, ctx());
    assert.equal(a.uuid, b.uuid);
    assert.match(a.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-5/);
  });

  it("keeps uuid, created_at and ignores the node's timestamps in a body", () => {
    const existing = normalizeApp({ name: "web", tenant: "acme" }, ctx({ now: new Date(0) }));
    const replaced = normalizeApp(
      { ...existing, created_at: "2000-01-01T00:00:00Z", updated_at: "x", branch: "dev" },
      ctx({ existing }),
    );
    assert.equal(replaced.uuid, existing.uuid);
    assert.equal(replaced.created_at, existing.created_at);
    assert.equal(replaced.updated_at, now.toISOString());
    assert.equal(replaced.branch, "dev");
  });

  const existing: App = normalizeApp({ name: "web", tenant: "acme" }, ctx());
  const base = { name: "web", tenant: "acme" };
  const rules: Array<[string, unknown, string, RegExp, Partial<NormalizeContext>?]> = [
    ["body not an object", [1], "body", /JSON object/],
    ["unknown field", { ...base, replicas: 3 }, "replicas", /not a known field/],
    ["unknown build field", { ...base, build: { cmd: "make" } }, "build.cmd", /not a known field/],
    ["missing name", { tenant: "acme" }, "name", /required/],
    ["name too long", { ...base, name: "a".repeat(64) }, "name", /at most 63/],
    ["name upper case", { ...base, name: "Web" }, "name", /DNS label/],
    ["name leading dash", { ...base, name: "-web" }, "name", /DNS label/],
    ["name trailing dash", { ...base, name: "web-" }, "name", /DNS label/],
    ["name with dot", { ...base, name: "w.b" }, "name", /DNS label/],
    ["name a uuid", { ...base, name: "0191e7c2-1111-7222-8333-444455556666" }, "name", /UUID/],
    ["name differs from URL", base, "name", /match the name in the URL/, { urlName: "api" }],
    ["name changes", { ...base, name: "api" }, "name", /cannot change/, { existing }],
    ["missing tenant", { name: "web" }, "tenant", /required/],
    ["empty tenant", { name: "web", tenant: "" }, "tenant", /required/],
    ["tenant with slash", { name: "web", tenant: "a/b" }, "tenant", /registry path component/],
    ["tenant non-ASCII", { name: "web", tenant: "\u212Aelvin" }, "tenant", /registry path component/],
    ["tenant not a string", { name: "web", tenant: 5 }, "tenant", /registry path component/],
    ["tenant changes", { ...base, tenant: "other" }, "tenant", /cannot change/, { existing }],
    ["repo_url not http", { ...base, repo_url: "file:///etc" }, "repo_url", /http\(s\)/],
    ["repo_url not a URL", { ...base, repo_url: "nope" }, "repo_url", /not a URL/],
    ["repo_url credentials", { ...base, repo_url: "https://u:p@h/o/r" }, "repo_url", /credentials/],
    ["repo_url type", { ...base, repo_url: 1 }, "repo_url", /string or null/],
    ["uuid malformed", { ...base, uuid: "nope" }, "uuid", /must be a UUID/],
    [
      "uuid changes",
      { ...base, uuid: "0191e7c2-1111-7222-8333-444455556666" },
      "uuid",
      /cannot change/,
      { existing },
    ],
    ["branch type", { ...base, branch: 1 }, "branch", /non-empty string/],
    ["branch ..", { ...base, branch: "a..b" }, "branch", /'\.\.'/],
    ["branch @{", { ...base, branch: "a@{b" }, "branch", /'@\{'/],
    ["branch leading -", { ...base, branch: "-rf" }, "branch", /start with '-'/],
    ["branch control char", { ...base, branch: "a\u0001b" }, "branch", /control/],
    ["branch .lock", { ...base, branch: "feature.lock" }, "branch", /\.lock/],
    ["servers not on roster", { ...base, servers: ["sup-z"] }, "servers[0]", /roster/],
    ["servers duplicate", { ...base, servers: ["sup-a", "sup-a"] }, "servers[1]", /twice/],
    ["servers not a list", { ...base, servers: "sup-a" }, "servers", /list of strings/],
    ["servers item type", { ...base, servers: [1] }, "servers[0]", /must be a string/],
    ["runtime unknown", { ...base, runtime: "vm" }, "runtime", /one of process, docker, wasm, firecracker/],
    ["env as values", { ...base, env: { API_KEY: "v" } }, "env", /names only/],
    ["env bad name", { ...base, env: ["1X"] }, "env[0]", /variable name/],
    ["environments empty", { ...base, environments: [] }, "environments", /at least one/],
    ["environments bad name", { ...base, environments: ["Prod"] }, "environments[0]", /DNS label/],
    ["build kind", { ...base, build: { kind: "nix" } }, "build.kind", /"docker"/],
    [
      "build context escapes",
      { ...base, build: { context: "../x" } },
      "build.context",
      /inside the repository/,
    ],
    [
      "build dockerfile absolute",
      { ...base, build: { dockerfile: "/Dockerfile" } },
      "build.dockerfile",
      /inside/,
    ],
    ["build not object", { ...base, build: "docker" }, "build", /must be an object/],
    ["labels value type", { ...base, labels: { a: 1 } }, "labels.a", /must be a string/],
    ["labels bad key", { ...base, labels: { "a b": "x" } }, "labels.a b", /keys are/],
    ["description too long", { ...base, description: "x".repeat(1001) }, "description", /at most 1000/],
  ];
  for (const [name, input, field, rule, extra] of rules) {
    it(`refuses ${name}`, () => refused(input, field, rule, extra));
  }

  it("never echoes an env value in the refusal", () => {
    assert.throws(
      () => normalizeApp({ ...base, env: { API_KEY: "value-that-is-secret" } }, ctx()),
      (err: Error) => !err.message.includes("value-that-is-secret"),
    );
  });
});

describe("branch names follow git's own ref-format rules", () => {
  const samples = [
    "main",
    "feature/x",
    "release-1.2",
    "a..b",
    "a@{b",
    "-rf",
    "a\u0001b",
    "a b",
    "x.lock",
    "dir/x.lock/y",
    "ends.",
    "/lead",
    "trail/",
    "dou//ble",
    ".hidden",
    "dir/.hidden",
    "a~b",
    "a^b",
    "a:b",
    "a?b",
    "a*b",
    "a[b",
    "a\\b",
    "@",
    "HEAD",
    "a@b",
    "x\u007fy",
    "ünïcode",
  ];
  for (const branch of samples) {
    it(`agrees with git check-ref-format --branch on ${JSON.stringify(branch)}`, () => {
      let gitAccepts: boolean;
      try {
        execFileSync("git", ["check-ref-format", "--branch", branch], { stdio: "ignore" });
        gitAccepts = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error("install git to run this test");
        gitAccepts = false;
      }
      // "@" alone is a valid branch to git, but means HEAD in every revision argument: refused here.
      const expected = branch === "@" ? false : gitAccepts;
      assert.equal(branchProblem(branch) === undefined, expected, branchProblem(branch) ?? "accepted");
    });
  }
});
