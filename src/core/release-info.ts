import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * What a packed platform release says about itself: `release.json` at the package root, written
 * by `tabbify upgrade pack` (src/upgrade/pack.ts). A source checkout has none, and its
 * `/api/version` says commit null.
 */
export interface ReleaseStamp {
  commit: string | null;
  built_at: string | null;
}

export const releaseStampFile = "release.json";

function readStamp(): ReleaseStamp {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json"))) {
      const file = join(dir, releaseStampFile);
      if (!existsSync(file)) break;
      const raw = JSON.parse(readFileSync(file, "utf8")) as Partial<ReleaseStamp>;
      return {
        commit: typeof raw.commit === "string" ? raw.commit : null,
        built_at: typeof raw.built_at === "string" ? raw.built_at : null,
      };
    }
    dir = dirname(dir);
  }
  return { commit: null, built_at: null };
}

export const releaseStamp: ReleaseStamp = readStamp();
