// The test command: typecheck + build (tsc), lint (biome), then node's test runner over every
// compiled *.test.js: unit tests beside the code in src/, integration and e2e tests in test/.
// `npm test -- <substring>` runs only the test files whose path contains the substring.
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const filters = process.argv.slice(2);
const bin = (name) => join(root, "node_modules", ".bin", name);

console.log("== typecheck + build (tsc)");
execFileSync(bin("tsc"), ["-p", "."], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [join(root, "scripts", "stamp-build.mjs")], { cwd: root, stdio: "inherit" });
console.log("== lint + format check (biome)");
execFileSync(bin("biome"), ["check", "."], { cwd: root, stdio: "inherit" });

function findTests(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(path));
    else if (entry.name.endsWith(".test.js")) out.push(path);
  }
  return out;
}
const files = ["src", "test"]
  .flatMap((d) => findTests(join(root, "dist", d)))
  .filter((f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`no test files matched ${filters.join(" ")}`);
  process.exit(1);
}
console.log(`== tests (${files.length} files)`);
const run = spawnSync(
  process.execPath,
  ["--enable-source-maps", "--test", "--test-concurrency=2", "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit" },
);
process.exit(run.status ?? 1);
