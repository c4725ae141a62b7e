import { randomBytes } from "node:crypto";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isErrno, TabbifyError } from "../core/errors.js";
import { formatTomlSyntaxError, isTomlSyntaxError, parseTomlDocument } from "../core/toml-errors.js";
import { isUuid } from "../core/uuid.js";

/**
 * `tabbify.lock`, kept in the app directory: which UUID `tcli push` minted for this app and
 * the last version it pushed, so the next push reuses the id (and so the address) and numbers
 * on from there.
 */
export interface AppLock {
  appId: string;
  /** 0 before the first successful push. */
  latestVersion: number;
}

export const LOCK_FILE = "tabbify.lock";

/** Reads `<dir>/tabbify.lock`; null when there is none. A malformed lock is LOCK_INVALID. */
export async function readLock(dir: string): Promise<AppLock | null> {
  const path = join(dir, LOCK_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return null;
    throw err;
  }
  return parseLock(text, path);
}

export function parseLock(text: string, file = LOCK_FILE): AppLock {
  let doc: Record<string, unknown>;
  try {
    doc = parseTomlDocument(text);
  } catch (err) {
    if (isTomlSyntaxError(err))
      throw new TabbifyError("LOCK_INVALID", `${file}:${formatTomlSyntaxError(err)}`);
    throw err;
  }
  const appId = doc["app_id"];
  if (typeof appId !== "string" || !isUuid(appId)) {
    throw new TabbifyError(
      "LOCK_INVALID",
      `${file}: app_id must be a UUID (delete the file to mint a new id)`,
    );
  }
  const raw = doc["latest_version"] ?? 0;
  const latestVersion = typeof raw === "bigint" ? Number(raw) : raw;
  if (typeof latestVersion !== "number" || !Number.isSafeInteger(latestVersion) || latestVersion < 0) {
    throw new TabbifyError("LOCK_INVALID", `${file}: latest_version must be a non-negative integer`);
  }
  return { appId: appId.toLowerCase(), latestVersion };
}

export function formatLock(lock: AppLock): string {
  return [
    "# Written by `tcli push`: the app's id (its address derives from it) and the last pushed version.",
    "# Commit it so every checkout pushes to the same app.",
    `app_id = "${lock.appId}"`,
    `latest_version = ${lock.latestVersion}`,
    "",
  ].join("\n");
}

/** Writes the lock atomically: a reader sees the old file or the new one, never half of either. */
export async function writeLock(dir: string, lock: AppLock): Promise<void> {
  const path = join(dir, LOCK_FILE);
  const tmp = join(dir, `.${LOCK_FILE}.${randomBytes(6).toString("hex")}.tmp`);
  await writeFile(tmp, formatLock(lock), { mode: 0o644 });
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
