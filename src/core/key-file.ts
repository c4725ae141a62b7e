import { randomBytes } from "node:crypto";
import { chmod, open, readFile, stat } from "node:fs/promises";
import { isErrno, TabbifyError } from "./errors.js";

/**
 * Secret keys kept in files (the node key under `tabbify up`, the supervisor API key): created
 * 0600 with O_EXCL so two starts never write different keys, and refused when another user could
 * read them, because such a key is only as secret as the file.
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
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, "wx", 0o600);
  } catch (err) {
    // Another process created it between the read and the open: take what it wrote.
    if (isErrno(err, "EEXIST")) return { key: await readKeyFile(path), created: false };
    throw err;
  }
  try {
    await file.writeFile(`${key}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  // The umask may have narrowed the mode further; never wider than 0600.
  await chmod(path, 0o600);
  return { key, created: true };
}
