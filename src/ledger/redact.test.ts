import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { REDACTED, redactForAudit } from "./redact.js";

describe("redactForAudit", () => {
  const cases: Array<[string, unknown, unknown]> = [
    ["env maps become their sorted names", { env: { B: "two", A: "one" } }, { env: ["A", "B"] }],
    ["env name lists stay", { env: ["A", "B"] }, { env: ["A", "B"] }],
    [
      "nested extra_env",
      { target: { extra_env: { DB_URL: "postgres://u:p@h/db" } } },
      { target: { extra_env: ["DB_URL"] } },
    ],
    ["tokens are dropped", { clone_token: "ghs_abc", push_token: "x", ok: 1 }, { ok: 1 }],
    [
      "secrets, passwords, keys",
      { webhook_secret: "s", password: "p", node_key: "k", api_key: "a", key: "k" },
      {},
    ],
    [
      "authorization headers",
      { headers: { Authorization: "Bearer x", accept: "json" } },
      { headers: { accept: "json" } },
    ],
    [
      "URL userinfo",
      { repo_url: "https://x-access-token:ghs_1@github.com/o/r.git" },
      { repo_url: "https://github.com/o/r.git" },
    ],
    ["arrays are walked", [{ token: "t", name: "n" }], [{ name: "n" }]],
    [
      "plain values pass",
      { name: "web", branch: "main", servers: ["a"], n: 1, ok: true, no: null },
      { name: "web", branch: "main", servers: ["a"], n: 1, ok: true, no: null },
    ],
    ["undefined fields vanish", { a: undefined, b: 1 }, { b: 1 }],
  ];
  for (const [name, input, expected] of cases) {
    it(name, () => assert.deepEqual(redactForAudit(input), expected));
  }

  it("replaces any string that contains a known secret value", () => {
    const out = redactForAudit(
      { note: "deploy with hunter22hunter in it", list: ["hunter22hunter"], fine: "nothing" },
      { secretValues: ["hunter22hunter", ""] },
    );
    assert.deepEqual(out, { note: REDACTED, list: [REDACTED], fine: "nothing" });
  });

  it("does not change its input", () => {
    const input = { env: { A: "1" }, token: "t" };
    redactForAudit(input);
    assert.deepEqual(input, { env: { A: "1" }, token: "t" });
  });
});
