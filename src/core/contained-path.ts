import { realpath } from "node:fs/promises";
import { isAbsolute, join, relative, sep } from "node:path";

/**
 * The one check for "does this path, symlinks followed, stay inside that directory": the
 * builder applies it to a build context inside a clone, `tcli push` to every file of an app
 * directory. Both read only what the directory holds, never what a link points at outside it
 * (`ln -s /etc etc`, `../../secret`).
 */

/** True when `realPath` is `realRoot` itself or lies under it. Both must already be realpaths. */
export function isWithin(realRoot: string, realPath: string): boolean {
  const rel = relative(realRoot, realPath);
  return !(rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/**
 * Where `path` (relative to `realRoot`) really is, following every symlink: `{ real }` when that
 * stays inside `realRoot`, `{ outside: real }` when it leaves. Rejects like `realpath` when the
 * path (or a link's target) does not exist.
 */
export async function resolveWithin(
  realRoot: string,
  path: string,
): Promise<{ real: string } | { outside: string }> {
  const real = await realpath(join(realRoot, path));
  return isWithin(realRoot, real) ? { real } : { outside: real };
}
