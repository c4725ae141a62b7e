// The test command: typecheck + build (tsc), lint (biome), then node's test runner over every
// compiled *.test.js: unit tests beside the code in src/, integration and e2e tests in test/.
// `npm test -- <substring>` runs only the test files whose path contains the substring.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const filters = process.argv.slice(2);
const bin = (name) => join(root, "node_modules", ".bin", name);

function findTests(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(path));
    else if (/\.test\.js(\.map)?$/.test(entry.name) || /\.test\.d\.ts(\.map)?$/.test(entry.name))
      out.push(path);
  }
  return out;
}

// A deleted test's compiled copy would still run: remove every compiled test before tsc writes
// the current ones. Only *.test.* outputs go, so a concurrent run's compiled code stays intact.
for (const stale of ["src", "test"].flatMap((d) => findTests(join(root, "dist", d))))
  rmSync(stale, { force: true });

console.log("== typecheck + build (tsc)");
execFileSync(bin("tsc"), ["-p", "."], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [join(root, "scripts", "stamp-build.mjs")], { cwd: root, stdio: "inherit" });
console.log("== dashboard UI (typecheck + vite build)");
execFileSync(bin("tsc"), ["-p", "src/dashboard/ui"], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [join(root, "scripts", "build-dashboard.mjs")], {
  cwd: root,
  stdio: "inherit",
});
console.log("== lint + format check (biome)");
execFileSync(bin("biome"), ["check", "."], { cwd: root, stdio: "inherit" });

const files = ["src", "test"]
  .flatMap((d) => findTests(join(root, "dist", d)))
  .filter((f) => f.endsWith(".test.js"))
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
