import { constants } from "node:fs";
import { access, readdir, readFile, realpath, stat } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import ignore, { type Ignore } from "ignore";
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

/**
 * Lists every file of an app directory that `tcli push` uploads: `.git/` is always skipped,
 * `.gitignore` and `.tabbifyignore` are honoured wherever they sit (a deeper file may
 * re-include with `!`). Symlinks are followed (loops are cut). Every file must be readable:
 * FILE_UNREADABLE names the first that is not, before anything is uploaded.
 */
const lockTempFile = /^\.tabbify\.lock\.[0-9a-f]+\.tmp$/;
function isLockTempFile(name: string): boolean {
  return lockTempFile.test(name);
}

export async function collectFiles(dir: string, opts: CollectOptions = {}): Promise<LocalFile[]> {
  const root = resolve(dir);
  const skipTop = new Set(opts.skipTopLevel ?? []);
  const skipDirs = new Set((opts.skipDirs ?? []).map((d) => resolve(d)));
  const out: LocalFile[] = [];
  const seenDirs = new Set<string>();

  const walk = async (abs: string, rel: string, levels: IgnoreLevel[]): Promise<void> => {
    const real = await realpath(abs);
    if (seenDirs.has(real)) return;
    seenDirs.add(real);
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
        info = await stat(full);
      } catch (err) {
        if (isErrno(err, "ENOENT")) throw unreadable(path, err, "a broken symlink");
        throw unreadable(path, err);
      }
      if (info.isDirectory()) {
        if (skipDirs.has(resolve(full)) || isIgnored(here, path, true)) continue;
        await walk(full, path, here);
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

  await walk(root, "", []);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Checks that one named file (a wasm entry) exists and is readable; returns it. */
export async function singleFile(dir: string, path: string, role: string): Promise<LocalFile> {
  const root = resolve(dir);
  const full = resolve(root, ...path.split("/"));
  if (!full.startsWith(root + sep)) {
    throw new TabbifyError("FILE_UNREADABLE", `${role} ${path} is outside the app directory`);
  }
  let size: number;
  try {
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
