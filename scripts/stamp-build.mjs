// Writes dist/build-info.json after tsc: the commit the build came from and when it was built, what
// every role's `/api/version` reports. Outside a git checkout the commit is null (unknown).
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let commit = null;
try {
  commit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
    .toString()
    .trim();
} catch {
  commit = null;
}
mkdirSync(join(root, "dist"), { recursive: true });
writeFileSync(
  join(root, "dist", "build-info.json"),
  `${JSON.stringify({ commit, built_at: new Date().toISOString() })}\n`,
);
