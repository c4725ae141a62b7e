import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { declarationsOfToml, declaredProbes } from "./release-declarations.js";
import { parseTabbifyToml } from "./tabbify-toml.js";

describe("release declarations", () => {
  it("reads [probes], [[environments]] and [deploy] migrate from a manifest.toml", () => {
    const declared = declarationsOfToml(`
[app]
name = "x"
[probes]
healthz = "/api/healthz"
ready = "/api/ready"
version = "/api/version"
[[environments]]
name = "test"
targets = ["sup-a"]
[[environments]]
name = "prod"
targets = ["sup-b", "sup-c"]
[deploy]
migrate = ["node", "migrate.js", "--up"]
`);
    assert.deepEqual(declared, {
      probes: { healthz: "/api/healthz", ready: "/api/ready", version: "/api/version" },
      environments: [
        { name: "test", targets: ["sup-a"] },
        { name: "prod", targets: ["sup-b", "sup-c"] },
      ],
      migrate: ["node", "migrate.js", "--up"],
    });
    assert.deepEqual(declarationsOfToml('[app]\nname = "x"\n'), {});
  });

  it("refuses what it could not honour, naming the key", () => {
    const bad: [string, RegExp][] = [
      ['[probes]\nhealthz = "http://evil/"', /probes/],
      ["[probes]\nready = 5", /probes\.ready/],
      ['[[environments]]\nname = "Prod!"\ntargets = ["a"]', /environments\.0\.name/],
      ['[[environments]]\nname = "t"\ntargets = []', /targets/],
      [
        '[[environments]]\nname = "t"\ntargets = ["a"]\n[[environments]]\nname = "t"\ntargets = ["b"]',
        /twice/,
      ],
      ["[deploy]\nmigrate = []", /deploy\.migrate/],
      ['[deploy]\nmigrate = "rake db:migrate"', /deploy\.migrate/],
    ];
    for (const [toml, why] of bad) {
      assert.throws(
        () => declarationsOfToml(toml),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, "MANIFEST_INVALID");
          assert.match(err.message, why);
          return true;
        },
      );
    }
  });

  it("lets tabbify.toml carry a [deploy] table with migrate, and still [[deploy]] targets without it", () => {
    const withMigrate = parseTabbifyToml('[app]\nname = "x"\n[deploy]\nmigrate = ["./migrate"]\n');
    assert.deepEqual(withMigrate.declarations, { migrate: ["./migrate"] });
    assert.deepEqual(withMigrate.deploy, []);
    const targets = parseTabbifyToml('[app]\nname = "x"\n[[deploy]]\nsupervisor = "a"\n');
    assert.equal(targets.deploy[0]?.supervisor, "a");
    assert.equal(targets.declarations, undefined);
  });

  it("expects the version probe to report the release id or its digest", () => {
    const digest = `sha256:${"1".repeat(64)}`;
    assert.deepEqual(declaredProbes({ probes: { version: "/v" } }, { id: "rel-1234567" }, digest), {
      version: "/v",
      expect: ["rel-1234567", digest],
    });
    assert.equal(declaredProbes({}, undefined, digest), undefined);
  });
});
