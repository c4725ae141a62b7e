import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Returns a file URL to the compiled entry, installing deps and compiling when it is missing. */
export async function ensureBuilt(relativeEntry) {
  const entry = join(root, relativeEntry);
  if (!existsSync(entry)) {
    execFileSync(process.execPath, [join(root, "scripts", "ensure-deps.mjs")], { stdio: "inherit" });
    console.error("tabbify: compiling TypeScript (first run) ...");
    execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "."], { cwd: root, stdio: "inherit" });
  }
  // The dashboard the node serves at `/` (src/dashboard/ui, built by Vite).
  if (!existsSync(join(root, "dist", "dashboard", "index.html"))) {
    console.error("tabbify: building the dashboard (first run) ...");
    execFileSync(process.execPath, [join(root, "scripts", "build-dashboard.mjs")], {
      cwd: root,
      stdio: "inherit",
    });
  }
  return pathToFileURL(entry).href;
}
