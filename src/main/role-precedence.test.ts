import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { artifactStoreOptions } from "./artifact-store-options.js";
import { run as runAudit } from "./audit.js";
import { serveSpecs } from "./auth.js";
import { type OptionSpec, parseOptions } from "./flags.js";
import { specs as meshSpecs } from "./mesh.js";
import { meshJoinOptions } from "./mesh-join.js";
import { nodeOptions } from "./node.js";
import { gcOptions, registryOptions } from "./registry.js";
import { specs as runnerSpecs } from "./runner.js";
import { specs as supervisorSpecs } from "./supervisor.js";
import { upOptions } from "./up.js";

/**
 * The README's "a flag wins over env, env over the default", checked for each option of each role
 * whose options are importable. tcli (which runs its CLI when imported) and `tabbify audit` (whose
 * one env source is the database URL) are driven as a user runs them, further down.
 */
const roles: Record<string, OptionSpec[]> = {
  node: nodeOptions,
  registry: registryOptions,
  "registry gc": gcOptions,
  supervisor: supervisorSpecs,
  "auth serve": serveSpecs,
  "artifact store": artifactStoreOptions,
  "mesh join": meshJoinOptions,
  "mesh token": meshSpecs,
  runner: runnerSpecs,
  up: upOptions,
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

describe("flag over env over default: tabbify audit verify", () => {
  // Nothing listens on port 1: which URL was tried shows in the error.
  const envUrl = "postgres://audit@127.0.0.1:1/from_env";

  it("--data wins over TABBIFY_DATABASE_URL", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tabbify-audit-precedence-"));
    try {
      await assert.rejects(
        runAudit(["verify", "--data", dir], { TABBIFY_DATABASE_URL: envUrl }),
        (err: Error) => err.message.includes(`no node store at ${dir}`),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("TABBIFY_DATABASE_URL wins over the default (none: name a source)", async () => {
    await assert.rejects(
      runAudit(["verify"], { TABBIFY_DATABASE_URL: envUrl }),
      (err: Error & { code?: string }) =>
        err.code !== "USAGE" && /ECONNREFUSED|127\.0\.0\.1:1/.test(err.message),
    );
    await assert.rejects(runAudit(["verify"], {}), /name exactly one of --data, --database, --node/);
  });
});

describe("flag over env over default: tcli", () => {
  const tcli = fileURLToPath(new URL("./tcli.js", import.meta.url));
  const app = "0b6f2c1e-8f3a-4d5b-9c7e-1a2b3c4d5e6f";

  /** The node URL `tcli status` tried, read from its "cannot reach" line (nothing listens there). */
  async function nodeTried(args: string[], env: Record<string, string>): Promise<string> {
    const home = await mkdtemp(join(tmpdir(), "tabbify-tcli-precedence-"));
    try {
      const output = await new Promise<string>((resolve) => {
        execFile(
          process.execPath,
          [tcli, "status", app, ...args],
          { env: { PATH: process.env.PATH ?? "", HOME: home, ...env }, timeout: 60_000 },
          (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
        );
      });
      const tried = /cannot reach the node at (\S+)/.exec(output)?.[1];
      assert.ok(tried, `tcli status did not say which node it tried: ${output}`);
      return tried;
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }

  it("--node wins over TABBIFY_CONTROL_PLANE_URL and TABBIFY_NODE_URL", async () => {
    const env = { TABBIFY_CONTROL_PLANE_URL: "http://127.0.0.1:3", TABBIFY_NODE_URL: "http://127.0.0.1:1" };
    assert.equal(await nodeTried(["--node", "http://127.0.0.1:2"], env), "http://127.0.0.1:2");
  });

  it("TABBIFY_CONTROL_PLANE_URL, then TABBIFY_NODE_URL, win over the default", async () => {
    const both = { TABBIFY_CONTROL_PLANE_URL: "http://127.0.0.1:3", TABBIFY_NODE_URL: "http://127.0.0.1:1" };
    assert.equal(await nodeTried([], both), "http://127.0.0.1:3");
    assert.equal(await nodeTried([], { TABBIFY_NODE_URL: "http://127.0.0.1:1" }), "http://127.0.0.1:1");
  });

  it("without either, the default node URL", async () => {
    // Fails (rather than skips) if something else answers on the default port 8090 meanwhile.
    assert.equal(await nodeTried([], {}), "http://127.0.0.1:8090");
  });
});
