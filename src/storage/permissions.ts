import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isErrno } from "../core/errors.js";

/**
 * Data dirs made by an older version (or by hand) may be 0755 with 0644 files, which lets every
 * local user read every tenant's content. This looks at a data dir and its immediate
 * subdirectories and returns one warning per one that group or others may enter or read, with the
 * command that fixes the whole tree. It changes nothing: a chmod is the operator's decision.
 * A dir that does not exist yet is fine (it will be created 0700).
 */
export async function dataDirPermissionWarnings(dir: string): Promise<string[]> {
  const loose: string[] = [];
  const check = async (path: string) => {
    const info = await stat(path);
    if (info.isDirectory() && (info.mode & 0o077) !== 0) {
      loose.push(`${path} (mode ${(info.mode & 0o777).toString(8).padStart(4, "0")})`);
    }
  };
  try {
    await check(dir);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) await check(join(dir, entry.name));
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return loose.length ? [warning(dir, loose)] : [];
    throw err;
  }
  return loose.length ? [warning(dir, loose)] : [];
}

function warning(dir: string, loose: string[]): string {
  const quoted = `'${dir.replaceAll("'", "'\\''")}'`;
  return `data dir is readable by group or others: ${loose.join(", ")}; fix it with: chmod -R go-rwx ${quoted}`;
}
