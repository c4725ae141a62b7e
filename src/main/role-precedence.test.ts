import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { artifactStoreOptions } from "./artifact-store-options.js";
import { serveSpecs } from "./auth.js";
import { type OptionSpec, parseOptions } from "./flags.js";
import { meshJoinOptions } from "./mesh-join.js";
import { nodeOptions } from "./node.js";
import { gcOptions, registryOptions } from "./registry.js";
import { specs as supervisorSpecs } from "./supervisor.js";

/**
 * The README's "a flag wins over env, env over the default", checked for each option of each role
 * whose options are importable (tcli.ts runs its CLI when imported, so tcli push is not here).
 */
const roles: Record<string, OptionSpec[]> = {
  node: nodeOptions,
  registry: registryOptions,
  "registry gc": gcOptions,
  supervisor: supervisorSpecs,
  "auth serve": serveSpecs,
  "artifact store": artifactStoreOptions,
  "mesh join": meshJoinOptions,
};

describe("flag over env over default, for every role", () => {
  for (const [role, specs] of Object.entries(roles)) {
    it(role, () => {
      let checked = 0;
      for (const s of specs) {
        if (!s.env) continue;
        if (s.boolean) {
          assert.equal(parseOptions([], { [s.env]: "1" }, specs).flags[s.flag], true, `${role} ${s.env}`);
          assert.equal(parseOptions([], {}, specs).flags[s.flag], false, `${role} --${s.flag} default`);
          assert.equal(parseOptions([`--${s.flag}`], {}, specs).flags[s.flag], true, `${role} --${s.flag}`);
        } else if (s.multiple) {
          const both = parseOptions([`--${s.flag}`, "from-flag"], { [s.env]: "from-env" }, specs);
          assert.deepEqual(both.lists[s.flag], ["from-flag"], `${role} --${s.flag}`);
          assert.deepEqual(parseOptions([], { [s.env]: "a,b" }, specs).lists[s.flag], ["a", "b"]);
        } else {
          const both = parseOptions([`--${s.flag}`, "from-flag"], { [s.env]: "from-env" }, specs);
          assert.equal(both.values[s.flag], "from-flag", `${role}: --${s.flag} must win over ${s.env}`);
          const env = parseOptions([], { [s.env]: "from-env" }, specs);
          assert.equal(env.values[s.flag], "from-env", `${role}: ${s.env} must win over the default`);
          assert.equal(parseOptions([], {}, specs).values[s.flag], s.default, `${role}: --${s.flag} default`);
        }
        checked++;
      }
      assert.ok(checked > 0, `${role} has options with env twins`);
    });
  }
});
