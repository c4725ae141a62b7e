// The dashboard UI's build: Preact through @preact/preset-vite, from src/dashboard/ui into
// dist/dashboard (which the node serves). scripts/build-dashboard.mjs runs it and prints the size.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
export const uiRoot = join(here, "ui");
export const outDir = join(here, "..", "..", "dist", "dashboard");

export default defineConfig({
  root: uiRoot,
  base: "/",
  logLevel: "warn",
  plugins: [preact({ prerender: { enabled: false } })],
  build: {
    outDir,
    emptyOutDir: true,
    // Must match ASSET_PREFIX in src/dashboard/paths.ts.
    assetsDir: "dashboard-assets",
    // The CSP allows no inline script: no polyfill snippet, no inlined assets.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
  },
});
