import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isTabbifyError, type TabbifyError } from "../core/errors.js";
import { locateKey, parseTabbifyToml } from "./tabbify-toml.js";

function errorOf(source: string): TabbifyError {
  try {
    parseTabbifyToml(source);
  } catch (err) {
    assert.ok(isTabbifyError(err, "TABBIFY_TOML_INVALID"), String(err));
    return err;
  }
  assert.fail("parsed without error");
}

describe("parseTabbifyToml", () => {
  it("fills defaults from a minimal manifest", () => {
    assert.deepEqual(parseTabbifyToml('[app]\nname = "hello"\n'), {
      app: { name: "hello" },
      build: { kind: "docker", context: ".", dockerfile: "Dockerfile" },
      runtime: { lifecycle: "on_request", idleTimeoutSec: 300, memoryMb: 512, vcpus: 1, stateful: false },
      routes: { dynamicPrefixes: [] },
      deploy: [],
      env: {},
    });
  });

  it("refuses a key nothing reads, by name and line: a misspelling, an unknown table, one in [[deploy]]", () => {
    assert.match(
      errorOf('[app]\nname = "x"\n[runtime]\nidle_timout_sec = 30\n').message,
      /tabbify\.toml:4:1: unknown key runtime\.idle_timout_sec: tabbify\.toml has no such key/,
    );
    assert.match(errorOf('[app]\nname = "x"\n[cache]\ndir = "a"\n').message, /:3:1: unknown key cache:/);
    assert.match(
      errorOf('[app]\nname = "x"\n[[deploy]]\nsupervisor = "a"\nruntme = "wasm"\n').message,
      /:5:1: unknown key deploy\[0\]\.runtme:/,
    );
    // [env] and [deploy.env] take any variable name.
    assert.equal(parseTabbifyToml('[app]\nname = "x"\n[env]\nANY_NAME = "1"\n').env.ANY_NAME, "1");
  });

  it("reads every section", () => {
    const manifest = parseTabbifyToml(`
[app]
id = "0191E7C2-1111-7222-8333-444455556666"
name = "hello-deploy"
description = "demo"

[build]
kind = "docker"
context = "app"
dockerfile = "app/Dockerfile.prod"
builder = "thinkpad"
stable_tag = "latest"

[runtime]
lifecycle = "always_on"
idle_timeout_sec = 60
memory_mb = 256
vcpus = 2
stateful = true
data_mount = "/data"

[routes]
dynamic_prefixes = []

[env]
GREETING = "hi"
MODE = "prod"

[[deploy]]
supervisor = "thinkpad"
runtime = "firecracker"

[deploy.env]
MODE = "edge"

[[deploy]]
supervisor = "cloud-1"
`);
    assert.deepEqual(manifest, {
      app: { id: "0191e7c2-1111-7222-8333-444455556666", name: "hello-deploy", description: "demo" },
      build: {
        kind: "docker",
        context: "app",
        dockerfile: "app/Dockerfile.prod",
        builder: "thinkpad",
        stableTag: "latest",
      },
      runtime: {
        lifecycle: "always_on",
        idleTimeoutSec: 60,
        memoryMb: 256,
        vcpus: 2,
        stateful: true,
        dataMount: "/data",
      },
      routes: { dynamicPrefixes: [] },
      deploy: [
        { supervisor: "thinkpad", runtime: "firecracker", env: { MODE: "edge" } },
        { supervisor: "cloud-1", env: {} },
      ],
      env: { GREETING: "hi", MODE: "prod" },
    });
  });

  it("reads [app].branch and refuses what is not a branch name, at its place", () => {
    assert.equal(parseTabbifyToml('[app]\nname = "a"\nbranch = "release/v2"\n').app.branch, "release/v2");
    assert.equal(parseTabbifyToml('[app]\nname = "a"\n').app.branch, undefined);
    for (const bad of ["-x", "a..b", "refs/heads/main", "a b", "x.lock", "x/"]) {
      assert.match(
        errorOf(`[app]\nname = "a"\nbranch = "${bad}"\n`).message,
        /^tabbify\.toml:3:10: app\.branch/,
      );
    }
    assert.match(
      errorOf('[app]\nname = "a"\nbranch = 1\n').message,
      /^tabbify\.toml:3:10: app\.branch must be a string/,
    );
  });

  it("refuses keys nothing would honour: a fixed port, dynamic_prefixes; checks data_mount", () => {
    assert.match(
      errorOf('[app]\nname = "a"\n[runtime]\nport = 8080\n').message,
      /^tabbify\.toml:4:8: runtime\.port is not supported/,
    );
    assert.match(
      errorOf('[app]\nname = "a"\n[routes]\ndynamic_prefixes = ["/api"]\n').message,
      /routes\.dynamic_prefixes is not supported/,
    );
    assert.match(
      errorOf('[app]\nname = "a"\n[runtime]\ndata_mount = "/data"\n').message,
      /runtime\.data_mount needs stateful = true/,
    );
    assert.match(
      errorOf('[app]\nname = "a"\n[runtime]\nstateful = true\ndata_mount = "/a/../b"\n').message,
      /without \. or \.\. parts/,
    );
  });

  it("reads any lifecycle other than on_request as always_on, like the reference", () => {
    assert.equal(
      parseTabbifyToml('[app]\nname = "a"\n[runtime]\nlifecycle = "warm"\n').runtime.lifecycle,
      "always_on",
    );
  });

  it("locates a type error at the value: name = 5 → 2:8", () => {
    assert.equal(errorOf("[app]\nname = 5\n").message, "tabbify.toml:2:8: app.name must be a string");
  });

  it("locates syntax errors from the parser's line and column", () => {
    const err = errorOf('[app]\nname = "x"\nport = = 1\n');
    assert.equal(
      err.message,
      'tabbify.toml:3:8: invalid value "=": text needs quotes ("…"); other values are true, false, numbers, dates, [ ] or { }',
    );
    assert.deepEqual((err.detail as { line: number }).line, 3);
  });

  it("requires app.name and deploy.supervisor", () => {
    assert.equal(errorOf('[build]\nkind = "docker"\n').message, "tabbify.toml:1:1: app.name is required");
    assert.equal(
      errorOf('[app]\nname = "a"\n\n[[deploy]]\nruntime = "docker"\n').message,
      "tabbify.toml:4:1: deploy[0].supervisor is required",
    );
  });

  it("points into the right [[deploy]] entry and its env table", () => {
    const source =
      '[app]\nname = "a"\n[[deploy]]\nsupervisor = "a"\n[[deploy]]\nsupervisor = "b"\nruntime = "kvm"\n';
    assert.equal(
      errorOf(source).message,
      "tabbify.toml:7:11: deploy[1].runtime must be one of process, docker, wasm, firecracker",
    );
    const envSource =
      '[app]\nname = "a"\n[[deploy]]\nsupervisor = "a"\n[[deploy]]\nsupervisor = "b"\n[deploy.env]\nPORT = 80\n';
    assert.equal(errorOf(envSource).message, "tabbify.toml:8:8: deploy[1].env.PORT must be a string");
  });

  it("rejects wrong types and values with the key's place", () => {
    const cases: [string, string][] = [
      ['[app]\nname = "a"\nid = "nope"\n', "tabbify.toml:3:6: app.id must be a UUID"],
      [
        '[app]\nname = "a"\n[build]\nkind = "nix"\n',
        'tabbify.toml:4:8: build.kind "nix" is not supported (only "docker")',
      ],
      [
        '[app]\nname = "a"\n[build]\ncontext = "../up"\n',
        "tabbify.toml:4:11: build.context must be a path inside the repository",
      ],
      [
        '[app]\nname = "a"\n[runtime]\nmemory_mb = "lots"\n',
        "tabbify.toml:4:13: runtime.memory_mb must be an integer",
      ],
      [
        '[app]\nname = "a"\n[runtime]\nport = 70000\n',
        "tabbify.toml:4:8: runtime.port must be between 1 and 65535",
      ],
      [
        '[app]\nname = "a"\n[runtime]\nstateful = "yes"\n',
        "tabbify.toml:4:12: runtime.stateful must be true or false",
      ],
      [
        '[app]\nname = "a"\n[runtime]\ndata_mount = "data"\n',
        "tabbify.toml:4:14: runtime.data_mount must be an absolute path without . or .. parts",
      ],
      ['[app]\nname = "a"\n[env]\nPORT = 8080\n', "tabbify.toml:4:8: env.PORT must be a string"],
      [
        '[app]\nname = "a"\n[env]\n"BAD-NAME" = "x"\n',
        "tabbify.toml:4:14: env.BAD-NAME is not a valid environment variable name",
      ],
      [
        '[app]\nname = "a"\n[routes]\ndynamic_prefixes = "/api"\n',
        "tabbify.toml:4:20: routes.dynamic_prefixes must be a list of strings",
      ],
      ['app = "x"\n', "tabbify.toml:1:7: app must be a table"],
    ];
    for (const [source, message] of cases) assert.equal(errorOf(source).message, message, source);
  });

  it("falls back to the table header when a key is written in a form the scan does not follow", () => {
    assert.deepEqual(locateKey('[app]\nname = "a"\n[runtime]\n', ["runtime", "port"]), {
      line: 3,
      column: 1,
    });
    assert.deepEqual(locateKey("", ["app", "name"]), { line: 1, column: 1 });
  });
});
