import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { build, type Plugin } from "esbuild";
import { CACHE_MODULE } from "../contract/analyse-module.js";
import { TabbifyError } from "../core/errors.js";

/**
 * One ESM file from the handler and everything it imports (esbuild), for the node's handler host.
 * `tabbify:cache` becomes a tiny module over the host's cache (`globalThis.__tabbifyCache`).
 */

export const cachePlugin: Plugin = {
  name: "tabbify-cache",
  setup(b) {
    b.onResolve({ filter: /^tabbify:cache$/ }, () => ({ path: CACHE_MODULE, namespace: "tabbify" }));
    b.onLoad({ filter: /.*/, namespace: "tabbify" }, () => ({
      contents: "export const cache = (namespace) => globalThis.__tabbifyCache(namespace);\n",
      loader: "js",
    }));
  },
};

export async function bundleHandler(handlerFile: string, outFile: string): Promise<void> {
  await mkdir(dirname(outFile), { recursive: true });
  try {
    await build({
      entryPoints: [handlerFile],
      outfile: outFile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "silent",
      plugins: [cachePlugin],
      // CommonJS dependencies call require(); an ESM bundle gets one.
      banner: {
        js: 'import { createRequire as __tbfRequire } from "node:module"; const require = __tbfRequire(import.meta.url);',
      },
    });
  } catch (err) {
    const errors = (
      err as { errors?: { text: string; location?: { file: string; line: number; column: number } }[] }
    ).errors;
    const first = errors?.[0];
    const where = first?.location
      ? `${first.location.file}:${first.location.line}:${first.location.column}: `
      : "";
    throw new TabbifyError(
      "BUNDLE_FAILED",
      `bundling the handler failed: ${where}${first?.text ?? (err as Error).message}`,
    );
  }
}
