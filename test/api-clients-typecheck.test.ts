/**
 * The typed clients are compiled against the route schemas: a schema change that breaks what a
 * client reads fails the typecheck. Each case edits one schema in memory (the files on disk stay
 * as they are), compiles the clients that read it with the project's own compiler options, and
 * expects an error in that client; the unedited tree compiles clean.
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";
import { repoRoot } from "./support/tools.js";

const clients = [
  "src/main/upgrade.ts",
  "src/upgrade/upgrader.ts",
  "src/upgrade/remote-supervisor.ts",
  "src/registry/release-roots.ts",
].map((f) => join(repoRoot, f));

const config = ts.readConfigFile(join(repoRoot, "tsconfig.json"), ts.sys.readFile).config as object;
const options = { ...ts.parseJsonConfigFileContent(config, ts.sys, repoRoot).options, noEmit: true };

let previous: ts.Program | undefined;

/** The errors of compiling the clients with `file`'s text edited from `from` to `to`. */
function errorsWith(edit?: { file: string; from: string; to: string }): ts.Diagnostic[] {
  const host = ts.createCompilerHost(options);
  const read = host.readFile.bind(host);
  const edited = edit ? resolve(repoRoot, edit.file) : undefined;
  host.readFile = (name) => {
    const text = read(name);
    if (!edit || resolve(name) !== edited || text === undefined) return text;
    assert.ok(text.includes(edit.from), `${edit.file} no longer holds ${JSON.stringify(edit.from)}`);
    return text.replace(edit.from, edit.to);
  };
  const program = ts.createProgram({ rootNames: clients, options, host, oldProgram: previous });
  previous = program;
  return ts.getPreEmitDiagnostics(program).filter((d) => d.category === ts.DiagnosticCategory.Error);
}

const describeErrors = (errors: ts.Diagnostic[]) =>
  errors
    .slice(0, 5)
    .map((d) => `${d.file?.fileName ?? "?"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`)
    .join("\n");

describe("the typed clients, compiled against the route schemas", () => {
  it("compile clean as the schemas are", () => {
    const errors = errorsWith();
    assert.equal(errors.length, 0, describeErrors(errors));
  });

  const cases = [
    {
      what: "the upgrade record loses `roles`: tabbify upgrade reads them",
      edit: { file: "src/node/schemas/operations.ts", from: "  roles: Type.Array(UpgradeRole),\n", to: "" },
      breaks: "src/main/upgrade.ts",
    },
    {
      what: "a topology supervisor's `display_name` becomes a number: the upgrader names remotes by it",
      edit: {
        file: "src/node/schemas/roster.ts",
        from: "      ula: Type.String(),\n      display_name: Type.String(),",
        to: "      ula: Type.String(),\n      display_name: Type.Integer(),",
      },
      breaks: "src/upgrade/upgrader.ts",
    },
    {
      what: "the supervisor's handoff answers `ready_ms` as text: up's RemoteSupervisor reports a number",
      edit: {
        file: "src/upgrade/schemas.ts",
        from: 'ready_ms: Type.Integer({ description: "from its start until it answered ready" })',
        to: 'ready_ms: Type.String({ description: "from its start until it answered ready" })',
      },
      breaks: "src/upgrade/remote-supervisor.ts",
    },
    {
      what: "the node's gc roots rename `reason`: the registry's release-aware GC reads it",
      edit: {
        file: "src/node/schemas/operations.ts",
        from: "keep: Type.Array(open({ digest: Type.String(), reason: Type.String() }))",
        to: "keep: Type.Array(open({ digest: Type.String(), why: Type.String() }))",
      },
      breaks: "src/registry/release-roots.ts",
    },
  ];
  for (const c of cases) {
    it(`fail when ${c.what}`, () => {
      const errors = errorsWith(c.edit);
      const inClient = errors.filter(
        (d) => d.file && resolve(d.file.fileName) === resolve(repoRoot, c.breaks),
      );
      assert.ok(inClient.length > 0, `no error in ${c.breaks}; errors:\n${describeErrors(errors)}`);
    });
  }
});
