import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "smol-toml";
import { isTabbifyError } from "../core/errors.js";
import { locate, parseManifest, stampAppId } from "./manifest.js";

const processApp = `# a comment that must survive stamping
[app]
name = "hello"
version = "1.2.0"

[lifecycle]
mode = "always_on"

[runtime]
type = "process"
command = ["node", "server.js"]
port = 8080

[routes]
dynamic_prefixes = []

[env]
GREETING = "hi"
`;

/** Asserts that parsing fails with MANIFEST_INVALID and returns the message. */
function failure(source: string): string {
  try {
    parseManifest(source, "m.toml");
  } catch (err) {
    assert.ok(isTabbifyError(err, "MANIFEST_INVALID"), `expected MANIFEST_INVALID, got ${String(err)}`);
    return err.message;
  }
  assert.fail("the manifest was accepted");
}

describe("parseManifest", () => {
  it("refuses keys it would otherwise accept and ignore: dynamic_prefixes, kernel", () => {
    const base = `[app]\nname = "x"\n[lifecycle]\nmode = "on_request"\n`;
    assert.match(
      failure(`${base}[routes]\ndynamic_prefixes = ["/api"]\n`),
      /m\.toml:6:1: \[routes\] dynamic_prefixes is not supported/,
    );
    assert.match(failure(`${base}[runtime]\nkernel = "vmlinux"\n`), /\[runtime\] kernel is not supported/);
  });

  it("refuses a key nothing reads, by name and line: a misspelling, a table of its own, a key in [app]", () => {
    const base = `[app]\nname = "x"\n[lifecycle]\nmode = "on_request"\n`;
    assert.match(
      failure(`${base}[runtime]\ntype = "process"\ncommand = ["x"]\nmemroy_mb = 64\n`),
      /m\.toml:8:1: unknown key runtime\.memroy_mb: manifest\.toml has no such key/,
    );
    assert.match(failure(`${base}[extras]\nx = 1\n`), /m\.toml:5:1: unknown key extras:/);
    assert.match(
      failure(`[app]\nname = "x"\nowner = "me"\n[lifecycle]\nmode = "on_request"\n`),
      /m\.toml:3:1: unknown key app\.owner:/,
    );
    assert.match(failure(`${base}idle_timeout = 5\n`), /unknown key lifecycle\.idle_timeout:/);
  });

  it("reads the release declarations ([probes], [[environments]], [deploy]) and refuses unknown keys in them", () => {
    const base = `[app]\nname = "x"\n[lifecycle]\nmode = "on_request"\n[runtime]\ntype = "process"\ncommand = ["x"]\n`;
    const declared = `[probes]\nhealthz = "/h"\n[[environments]]\nname = "test"\ntargets = ["a"]\n[deploy]\nmigrate = ["m"]\n`;
    assert.equal(parseManifest(base + declared).app.name, "x");
    assert.match(
      failure(`${base}[[environments]]\nname = "test"\ntargets = ["a"]\nregion = "eu"\n`),
      /m\.toml:11:1: unknown key environments\[0\]\.region/,
    );
    assert.match(
      failure(`${base}[[environments]]\nname = "Bad Name"\ntargets = ["a"]\n`),
      /m\.toml:9:1: environments\[0\]\.name/,
    );
  });

  it("checks data_mount: absolute, no .. parts, only with stateful = true", () => {
    const base = `[app]\nname = "x"\n[lifecycle]\nmode = "on_request"\n[runtime]\n`;
    assert.match(
      failure(`${base}stateful = true\ndata_mount = "data"\n`),
      /data_mount must be an absolute path/,
    );
    assert.match(
      failure(`${base}stateful = true\ndata_mount = "/data/../etc"\n`),
      /data_mount must be an absolute path/,
    );
    assert.match(failure(`${base}data_mount = "/data"\n`), /data_mount needs stateful = true/);
    const ok = parseManifest(`${base}stateful = true\ndata_mount = "/var/app"\n`);
    assert.equal(ok.runtime.dataMount, "/var/app");
    assert.equal(ok.runtime.memoryMb, 64, "a wasm app's default stays 64 MB");
  });

  it("parses a process app with defaults filled in", () => {
    const m = parseManifest(processApp);
    assert.deepEqual(m, {
      app: { name: "hello", version: "1.2.0", kind: "headless", description: undefined },
      lifecycle: { mode: "always_on", idleTimeoutSec: 300 },
      runtime: {
        type: "process",
        command: ["node", "server.js"],
        port: 8080,
        fuelPerRequest: 1_000_000_000,
        memoryMb: 512,
        stateful: false,
      },
      routes: { dynamicPrefixes: [] },
      env: { GREETING: "hi" },
    });
  });

  it("treats the seed's wasm-http as wasm and defaults the entry", () => {
    const m = parseManifest(
      `[app]\nname = "w"\n[lifecycle]\nmode = "on_request"\n[runtime]\ntype = "wasm-http"\n`,
    );
    assert.equal(m.runtime.type, "wasm");
    assert.equal(m.runtime.entry, "app.wasm");
    const noRuntime = parseManifest(`[app]\nname = "w"\n[lifecycle]\nmode = "on_request"\n`);
    assert.equal(noRuntime.runtime.type, "wasm", "the seed's default runtime is wasm-http");
  });

  it("parses a docker build with its defaults and a lowercased id", () => {
    const m = parseManifest(
      `[app]\nid = "0191E7C2-1111-7222-8333-444455556666"\nname = "d"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "docker"\nport = 80\n[build]\nkind = "docker"\n`,
    );
    assert.equal(m.app.id, "0191e7c2-1111-7222-8333-444455556666");
    assert.deepEqual(m.build, { kind: "docker", dockerfile: "Dockerfile", context: "." });
  });

  it("reports a syntax error with its line and column", () => {
    const msg = failure(`[app]\nname = "x"\n[lifecycle]\nmode = \n`);
    assert.equal(msg, "m.toml:4:8: missing value: nothing follows the =");
    assert.equal(
      failure('[app]\nname = "x\n'),
      'm.toml:2:10: unterminated string: the closing " is missing on this line',
    );
  });

  it("names the allowed values of an unknown build kind, at its line", () => {
    const msg = failure(`[app]\nname = "x"\n[lifecycle]\nmode = "always_on"\n\n[build]\nkind = "nix"\n`);
    assert.equal(msg, 'm.toml:7:1: [build] kind = "nix" is not supported: use one of "docker"');
  });

  it("names the allowed values of an unknown runtime type and app kind", () => {
    assert.match(
      failure(`[app]\nname = "x"\n[lifecycle]\nmode = "always_on"\n[runtime]\n  type = "vm"\n`),
      /^m\.toml:6:3: \[runtime\] type = "vm" is not supported: use one of "process", "wasm", "docker", "wasm-http"$/,
    );
    assert.match(
      failure(`[app]\nname = "x"\nkind = "daemon"\n[lifecycle]\nmode = "always_on"\n`),
      /^m\.toml:3:1: \[app\] kind = "daemon" is not supported/,
    );
  });

  it("reports a missing required field at its table's header", () => {
    assert.equal(
      failure(`[app]\nname = "x"\n\n[lifecycle]\nidle_timeout_sec = 30\n`),
      'm.toml:4:1: [lifecycle] mode is required: one of "always_on", "on_request"',
    );
    assert.equal(
      failure(`[lifecycle]\nmode = "always_on"\n\n[app]\nversion = "1"\n`),
      "m.toml:4:1: [app] name is required",
    );
    assert.equal(failure(`[app]\nname = "x"\n`), "m.toml:1:1: the [lifecycle] table is required");
  });

  it("rejects a process app without a command, and wrong types, at the key's line", () => {
    assert.match(
      failure(`[app]\nname = "x"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "process"\n`),
      /^m\.toml:5:1: \[runtime\] command is required for type = "process"/,
    );
    assert.equal(
      failure(`[app]\nname = "x"\n[lifecycle]\nmode = "always_on"\nidle_timeout_sec = "soon"\n`),
      "m.toml:5:1: [lifecycle] idle_timeout_sec must be an integer",
    );
    assert.equal(
      failure(`[app]\nname = "x"\nid = "nope"\n[lifecycle]\nmode = "always_on"\n`),
      'm.toml:3:1: [app] id must be a UUID, got "nope"',
    );
  });

  it("refuses paths that leave the app directory", () => {
    assert.match(
      failure(
        `[app]\nname = "x"\n[lifecycle]\nmode = "on_request"\n[runtime]\ntype = "wasm"\nentry = "../x.wasm"\n`,
      ),
      /^m\.toml:7:1: \[runtime\] entry must be a relative path inside the app directory/,
    );
  });

  it("refuses a docker runtime with nothing to run", () => {
    assert.match(
      failure(`[app]\nname = "x"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "docker"\n`),
      /needs an image: add \[build\] kind = "docker"/,
    );
  });
});

describe("locate", () => {
  it("finds dotted keys at the top level", () => {
    assert.deepEqual(locate(`app.name = 1\nlifecycle.mode = "x"\n`, "lifecycle", "mode"), {
      line: 2,
      column: 1,
    });
  });
});

describe("stampAppId", () => {
  const id = "0191e7c2-1111-7222-8333-444455556666";

  it("inserts the id after [app] and keeps comments and layout", () => {
    const stamped = stampAppId(processApp, id);
    assert.equal(stamped, processApp.replace("[app]\n", `[app]\nid = "${id}"\n`));
  });

  it("replaces an existing id", () => {
    const src = `[app]\n  id = "0191e7c2-0000-7000-8000-000000000000" # old\nname = "x"\n`;
    assert.equal(stampAppId(src, id), `[app]\n  id = "${id}"\nname = "x"\n`);
  });

  it("re-serializes manifests written with an inline app table", () => {
    const src = `app = { name = "x" }\n[lifecycle]\nmode = "on_request"\n`;
    const doc = parse(stampAppId(src, id)) as { app: { id: string; name: string } };
    assert.deepEqual({ ...doc.app }, { name: "x", id });
  });
});
