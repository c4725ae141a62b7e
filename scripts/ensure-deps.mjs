// Installs npm dependencies when node_modules is missing or older than the lockfile, so the
// README's two commands work on a fresh clone with nothing but Node and npm.
import { execFileSync } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "node_modules", ".deps-stamp");
const lock = join(root, "package-lock.json");
const fresh = existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs;
if (!fresh) {
  console.error("tabbify: installing npm dependencies (npm ci) ...");
  execFileSync("npm", ["ci", "--no-fund", "--no-audit"], { cwd: root, stdio: "inherit" });
  writeFileSync(stamp, new Date().toISOString());
}
