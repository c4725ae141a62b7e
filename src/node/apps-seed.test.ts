import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { parseSeedApps } from "./apps-seed.js";

describe("--seed-apps files", () => {
  it("reads JSON {apps: [...]}", () => {
    const apps = parseSeedApps('{"apps":[{"name":"web","tenant":"acme","servers":["a"]}]}', "seed.json");
    assert.deepEqual(apps, [{ name: "web", tenant: "acme", servers: ["a"] }]);
  });

  it("reads TOML [[apps]] with nested tables", () => {
    const text =
      '[[apps]]\nname = "web"\ntenant = "acme"\n[apps.build]\ncontext = "app"\n\n[[apps]]\nname = "api"\ntenant = "acme"\nenv = ["DB_URL"]\n';
    assert.deepEqual(parseSeedApps(text, "apps.TOML"), [
      { name: "web", tenant: "acme", build: { context: "app" } },
      { name: "api", tenant: "acme", env: ["DB_URL"] },
    ]);
  });

  const bad: Array<[string, string, RegExp]> = [
    ["{", "s.json", /not valid JSON/],
    ["name = ", "s.toml", /not valid TOML/],
    ['{"apps": {}}', "s.json", /list of apps/],
    ["[1]", "s.json", /list of apps/],
    ['name = "x"', "s.toml", /\[\[apps\]\]/],
    ['{"apps": [], "extra": 1}', "s.json", /unknown top-level key "extra"/],
  ];
  for (const [text, file, message] of bad) {
    it(`refuses ${JSON.stringify(text)} as ${file}`, () => {
      assert.throws(
        () => parseSeedApps(text, file),
        (err: unknown) => isTabbifyError(err, "USAGE") && message.test(err.message),
      );
    });
  }
});
