/**
 * docs/manifest-reference.md stays true: its two examples parse with the real parsers to what
 * the tables say, and the error lines it shows are the parsers' own, position and words.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { parseManifest } from "../src/artifacts/manifest.js";
import { parseTabbifyToml } from "../src/pipeline/tabbify-toml.js";
import { repoRoot } from "./support/tools.js";

const doc = readFileSync(join(repoRoot, "docs", "manifest-reference.md"), "utf8");
const blocks = (lang: string) =>
  [...doc.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, "g"))].map((m) => m[1]!);

it("the reference's examples parse, with the defaults it lists", () => {
  const [manifestExample, tabbifyExample] = blocks("toml");
  const m = parseManifest(manifestExample!, "manifest.toml");
  assert.equal(m.app.name, "hello-node");
  assert.equal(m.runtime.memoryMb, 128);
  assert.equal(m.lifecycle.idleTimeoutSec, 300);
  const t = parseTabbifyToml(tabbifyExample!);
  assert.deepEqual(
    t.deploy.map((d) => [d.supervisor, d.env]),
    [
      ["eu-1", {}],
      ["us-1", { REGION: "us" }],
    ],
  );
  assert.deepEqual(t.build, { kind: "docker", context: ".", dockerfile: "Dockerfile" });
  assert.equal(t.runtime.idleTimeoutSec, 300);
  assert.equal(t.runtime.vcpus, 1);
});

it("the error lines it shows are what the parsers say", () => {
  const sources: Record<string, string> = {
    'manifest.toml:2:12: unterminated string: the closing " is missing on this line': '[app]\nname = "abc\n',
    "manifest.toml:4:8: missing value: nothing follows the =": '[app]\nname = "x"\n[lifecycle]\nmode = \n',
    'tabbify.toml:3:8: invalid value "hello": text needs quotes ("…"); other values are true, false, numbers, dates, [ ] or { }':
      '[app]\nname = "x"\nport = hello\n',
    "manifest.toml:3:1: name is defined twice (or clashes with a table of that name)":
      '[app]\nname = "x"\nname = "y"\n',
  };
  const shown = blocks("")
    .flatMap((b) => b.split("\n"))
    .filter((l) => /^\S+\.toml:\d+:\d+: /.test(l));
  assert.deepEqual(shown.sort(), Object.keys(sources).sort());
  for (const [line, source] of Object.entries(sources)) {
    const parse = line.startsWith("tabbify.toml")
      ? () => parseTabbifyToml(source)
      : () => parseManifest(source);
    assert.throws(parse, (err: Error) => err.message === line, line);
  }
});
