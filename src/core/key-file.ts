import { randomBytes } from "node:crypto";
import { chmod, link, open, readFile, stat, unlink } from "node:fs/promises";
import { isErrno, TabbifyError } from "./errors.js";

/**
 * Secret keys kept in files (the node key under `tabbify up`, the supervisor API key): created
 * 0600 and published whole, so two starts never end up with different keys, and refused when
 * another user could read them, because such a key is only as secret as the file.
 */

/** 32 random bytes, base64url: fits a header and an env var as is. */
export function newKey(): string {
  return randomBytes(32).toString("base64url");
}

/** The key in `path`; KEY_FILE_INVALID when it is empty, KEY_FILE_EXPOSED when group or others may read it. */
export async function readKeyFile(path: string): Promise<string> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new TabbifyError(
      "KEY_FILE_EXPOSED",
      `${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
    );
  }
  const key = (await readFile(path, "utf8")).trim();
  if (key === "") throw new TabbifyError("KEY_FILE_INVALID", `${path} holds no key`);
  return key;
}

/** The key in `path`, or a new one written there (0600) when the file does not exist yet. */
export async function loadOrCreateKeyFile(path: string): Promise<{ key: string; created: boolean }> {
  try {
    return { key: await readKeyFile(path), created: false };
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
  const key = newKey();
  // Written whole to a private temp file, then linked into place: link() fails if the name exists,
  // so a start racing another never reads a half-written key, and exactly one key wins.
  const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const file = await open(temp, "wx", 0o600);
  try {
    await file.writeFile(`${key}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    // The umask may have narrowed the mode further; never wider than 0600.
    await chmod(temp, 0o600);
    await link(temp, path);
  } catch (err) {
    if (isErrno(err, "EEXIST")) return { key: await readKeyFile(path), created: false };
    throw err;
  } finally {
    await unlink(temp).catch(() => {});
  }
  return { key, created: true };
}
