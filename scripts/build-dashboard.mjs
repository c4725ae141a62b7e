// Builds the dashboard UI (src/dashboard/ui, Preact + Vite) into dist/dashboard and prints what a
// browser downloads on first load: index.html's scripts and stylesheets (and the modules they
// preload), gzipped. Fails when that passes the budget, so a heavy dependency cannot slip in.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET_BYTES = 150 * 1024;
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const configFile = join(root, "src", "dashboard", "vite.config.mjs");
const { build } = await import("vite");
await build({ configFile, logLevel: "warn" });

const outDir = join(root, "dist", "dashboard");
const html = readFileSync(join(outDir, "index.html"), "utf8");
if (/<script(?![^>]*\bsrc=)[^>]*>/i.test(html)) {
  console.error("dashboard: index.html has an inline script, which the CSP refuses");
  process.exit(1);
}
const firstLoad = [...html.matchAll(/(?:src|href)="(\/dashboard-assets\/[^"]+\.(?:js|css))"/g)].map(
  (m) => m[1],
);
let total = 0;
for (const path of firstLoad) {
  const file = join(outDir, path);
  if (!existsSync(file)) throw new Error(`index.html names ${path}, which the build did not write`);
  total += gzipSync(readFileSync(file), { level: 9 }).length;
}
const kb = (total / 1024).toFixed(1);
console.log(`dashboard: first load ${kb} KB gzipped (${firstLoad.length} files; budget 150 KB)`);
if (total > BUDGET_BYTES) {
  console.error(`dashboard: first load ${kb} KB is over the 150 KB budget`);
  process.exit(1);
}
