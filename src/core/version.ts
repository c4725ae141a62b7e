import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The package version, read once from the nearest package.json named "tabbify" above this file,
 * which works both from src/ (tsx) and from dist/src/ (compiled).
 */
function readVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "tabbify" && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return "0.0.0-unknown";
}

export const tabbifyVersion: string = readVersion();

export interface BuildStamp {
  /** The source commit; null when unknown. */
  commit: string | null;
  /** ISO 8601; null when unknown. */
  built_at: string | null;
}

/**
 * Where this build came from: dist/build-info.json, written at build time (scripts/stamp-build.mjs),
 * found walking up from this file; run from source in a git checkout, the checkout's HEAD.
 */
function readBuildStamp(): BuildStamp {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, "build-info.json");
    if (existsSync(file)) {
      try {
        const stamp = JSON.parse(readFileSync(file, "utf8")) as Partial<BuildStamp>;
        return {
          commit: typeof stamp.commit === "string" ? stamp.commit : null,
          built_at: typeof stamp.built_at === "string" ? stamp.built_at : null,
        };
      } catch {
        break;
      }
    }
    const head = gitHead(dir);
    if (head) return { commit: head, built_at: null };
    dir = dirname(dir);
  }
  return { commit: null, built_at: null };
}

/** The commit a checkout at `dir` has out (`.git` a directory, or a worktree's `gitdir:` file). */
function gitHead(dir: string): string | null {
  let gitDir = join(dir, ".git");
  if (!existsSync(gitDir)) return null;
  try {
    const dotGit = readFileSync(gitDir, "utf8");
    const linked = /^gitdir: (.+)$/m.exec(dotGit);
    if (linked) gitDir = linked[1]!.trim();
  } catch {
    // A directory: read it as is.
  }
  try {
    const head = readFileSync(join(gitDir, "HEAD"), "utf8").trim();
    if (/^[0-9a-f]{40}$/.test(head)) return head;
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    if (!ref) return null;
    const common = existsSync(join(gitDir, "commondir"))
      ? join(gitDir, readFileSync(join(gitDir, "commondir"), "utf8").trim())
      : gitDir;
    for (const base of [gitDir, common]) {
      const file = join(base, ref);
      if (existsSync(file)) return readFileSync(file, "utf8").trim();
    }
    const packed = readFileSync(join(common, "packed-refs"), "utf8");
    return new RegExp(`^([0-9a-f]{40}) ${ref}$`, "m").exec(packed)?.[1] ?? null;
  } catch {
    return null;
  }
}

export const buildStamp: BuildStamp = readBuildStamp();
