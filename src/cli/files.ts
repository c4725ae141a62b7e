import { constants } from "node:fs";
import { access, lstat, readdir, readFile, realpath, stat } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import ignore, { type Ignore } from "ignore";
import { isWithin, resolveWithin } from "../core/contained-path.js";
import { isErrno, TabbifyError } from "../core/errors.js";

/** One file of an app directory, as `tcli push` will upload it. */
export interface LocalFile {
  /** Relative to the app directory, `/`-separated: the key suffix under `apps/<uuid>/v<N>/`. */
  path: string;
  /** Absolute path on disk. */
  source: string;
  size: number;
}

/** Files with excludes of their own: `.gitignore` syntax, honoured in every directory. */
export const IGNORE_FILES = [".gitignore", ".tabbifyignore"] as const;

export interface CollectOptions {
  /** Relative paths at the top of the directory never uploaded (the lock, the manifest shipped stamped). */
  skipTopLevel?: string[];
  /** Absolute directories never descended into, e.g. a local artifact store inside the app dir. */
  skipDirs?: string[];
}

interface IgnoreLevel {
  /** Directory of the ignore files, relative to the app root ("" for the root). */
  base: string;
  rules: Ignore;
}

const lockTempFile = /^\.tabbify\.lock\.[0-9a-f]+\.tmp$/;
function isLockTempFile(name: string): boolean {
  return lockTempFile.test(name);
}

/**
 * Lists every file of an app directory that `tcli push` uploads: `.git/` is always skipped,
 * `.gitignore` and `.tabbifyignore` are honoured wherever they sit (a deeper file may
 * re-include with `!`). A symlink whose target stays inside the directory is stored as what it
 * points to (the target's bytes under the link's path; a linked directory is walked, loops cut).
 * A symlink that leaves the directory is refused with SYMLINK_OUTSIDE_APP naming the link, so a
 * push never reads `/etc` or `../../secrets` into the store. Every file must be readable:
 * FILE_UNREADABLE names the first that is not. All of this is checked before anything uploads.
 */
export async function collectFiles(dir: string, opts: CollectOptions = {}): Promise<LocalFile[]> {
  const root = await realpath(resolve(dir));
  const skipTop = new Set(opts.skipTopLevel ?? []);
  // Compared by realpath: the root is one, so a skipped dir must be spelled the same way.
  const skipDirs = new Set(
    await Promise.all((opts.skipDirs ?? []).map((d) => realpath(resolve(d)).catch(() => resolve(d)))),
  );
  const out: LocalFile[] = [];
  const walk = async (
    abs: string,
    rel: string,
    levels: IgnoreLevel[],
    ancestors: ReadonlySet<string>,
  ): Promise<void> => {
    // A linked directory is walked under its link's path too; only a link back to a directory
    // being walked (a loop) is cut.
    const real = await realpath(abs);
    if (ancestors.has(real)) return;
    const inside = new Set(ancestors).add(real);
    let names: string[];
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      throw unreadable(rel === "" ? "." : `${rel}/`, err);
    }
    const rules = await loadIgnoreRules(abs, names);
    const here = rules ? [...levels, { base: rel, rules }] : levels;
    for (const name of names) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const full = join(abs, name);
      if (name === ".git") continue;
      if (rel === "" && skipTop.has(name)) continue;
      // A concurrent push of the same directory writes its lock through a temp file; it is
      // ours, never the app's, and may vanish between readdir and stat.
      if (rel === "" && isLockTempFile(name)) continue;
      let info: Awaited<ReturnType<typeof stat>>;
      try {
        if ((await lstat(full)).isSymbolicLink()) {
          // An ignored link is never read, wherever it points.
          if (isIgnored(here, path, false) || isIgnored(here, path, true)) continue;
          await refuseOutsideLink(root, full, path);
        }
        info = await stat(full);
      } catch (err) {
        if (err instanceof TabbifyError) throw err;
        if (isErrno(err, "ENOENT")) throw unreadable(path, err, "a broken symlink");
        throw unreadable(path, err);
      }
      if (info.isDirectory()) {
        if (skipDirs.has(await realpath(full)) || isIgnored(here, path, true)) continue;
        await walk(full, path, here, inside);
      } else if (info.isFile()) {
        if (isIgnored(here, path, false)) continue;
        try {
          await access(full, constants.R_OK);
        } catch (err) {
          throw unreadable(path, err);
        }
        out.push({ path, source: full, size: info.size });
      } else {
        if (isIgnored(here, path, false)) continue;
        throw new TabbifyError(
          "FILE_UNREADABLE",
          `${path}: not a regular file (socket, FIFO or device); exclude it in .tabbifyignore`,
          { path },
        );
      }
    }
  };

  await walk(root, "", [], new Set());
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Checks that one named file (a wasm entry) exists and is readable; returns it. */
export async function singleFile(dir: string, path: string, role: string): Promise<LocalFile> {
  const root = await realpath(resolve(dir));
  const full = resolve(root, ...path.split("/"));
  if (!isWithin(root, full)) {
    throw new TabbifyError("FILE_UNREADABLE", `${role} ${path} is outside the app directory`);
  }
  let size: number;
  try {
    const resolved = await resolveWithin(root, relative(root, full));
    if ("outside" in resolved) {
      throw new TabbifyError(
        "SYMLINK_OUTSIDE_APP",
        `${role} ${path} is a symlink to ${resolved.outside}, outside the app directory: copy the file in instead`,
        { path, target: resolved.outside },
      );
    }
    const info = await stat(full);
    if (!info.isFile()) throw new TabbifyError("FILE_UNREADABLE", `${role} ${path} is not a file`, { path });
    size = info.size;
    await access(full, constants.R_OK);
  } catch (err) {
    if (err instanceof TabbifyError) throw err;
    if (isErrno(err, "ENOENT")) {
      throw new TabbifyError("FILE_UNREADABLE", `${role} ${path} does not exist in ${root}`, { path });
    }
    throw unreadable(path, err);
  }
  return { path: relative(root, full).split(sep).join("/"), source: full, size };
}

/** SYMLINK_OUTSIDE_APP when the link at `full` (`path` in the app) resolves outside `root`. */
async function refuseOutsideLink(root: string, full: string, path: string): Promise<void> {
  let resolved: Awaited<ReturnType<typeof resolveWithin>>;
  try {
    resolved = await resolveWithin(root, relative(root, full));
  } catch (err) {
    // A dangling link: stat reports it as a broken symlink right after.
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  if ("outside" in resolved) {
    throw new TabbifyError(
      "SYMLINK_OUTSIDE_APP",
      `${path} is a symlink to ${resolved.outside}, outside the app directory: tcli push reads only the app's own files (copy what it needs in, or list the link in .tabbifyignore)`,
      { path, target: resolved.outside },
    );
  }
}

async function loadIgnoreRules(abs: string, names: string[]): Promise<Ignore | null> {
  let rules: Ignore | null = null;
  for (const file of IGNORE_FILES) {
    if (!names.includes(file)) continue;
    let text: string;
    try {
      text = await readFile(join(abs, file), "utf8");
    } catch (err) {
      throw unreadable(file, err);
    }
    rules ??= ignore();
    rules.add(text);
  }
  return rules;
}

/** Git's precedence: the deepest rule that matches decides, and `!pattern` re-includes. */
function isIgnored(levels: IgnoreLevel[], path: string, isDir: boolean): boolean {
  let ignored = false;
  for (const { base, rules } of levels) {
    const rel = base === "" ? path : path.slice(base.length + 1);
    const verdict = rules.test(isDir ? `${rel}/` : rel);
    if (verdict.ignored) ignored = true;
    else if (verdict.unignored) ignored = false;
  }
  return ignored;
}

function unreadable(path: string, err: unknown, what?: string): TabbifyError {
  const code = (err as NodeJS.ErrnoException).code ?? "error";
  const reason = what ?? (code === "EACCES" || code === "EPERM" ? "permission denied" : code);
  return new TabbifyError("FILE_UNREADABLE", `cannot read ${path}: ${reason}`, { path });
}
