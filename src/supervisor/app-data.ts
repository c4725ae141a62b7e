import { chmod, lchown, lstat, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { DEFAULT_DATA_MOUNT, type WorkloadSpec, type WorkloadUser } from "../runtimes/runtime.js";

/**
 * Stateful apps' data: `<data>/app-data/<uuid>/`, 0700 and owned by the app's own uid (the
 * unprivileged container user when there are no app users and the app runs in docker), so no
 * other app can read it. It outlives swaps, restarts, runner crashes and supervisor restarts
 * (nothing but `purge` removes it) and is handed to the workload as TABBIFY_DATA_DIR (process),
 * a bind mount at `data_mount` (docker) or a WASI preopen at `data_mount` (wasm).
 */

/** The uid:gid docker workloads run as without app users (docker-run.ts DEFAULT_CONTAINER_USER). */
const NOBODY = 65534;

export function appDataDir(dataRoot: string, uuid: string): string {
  return join(dataRoot, "app-data", uuid);
}

/** Where the app sees its data, for comparing one deploy with the next. */
export function dataMountOf(spec: WorkloadSpec): string | null {
  return spec.stateful ? (spec.dataMount ?? DEFAULT_DATA_MOUNT) : null;
}

/**
 * Refuses (409, `user_fault: true`) a new spec that would lose a stateful app's data: turning
 * `stateful` off or moving `data_mount`. The data stays; purge is the way to drop it.
 */
export function checkDataKept(previous: WorkloadSpec | undefined, next: WorkloadSpec): void {
  if (!previous?.stateful) return;
  const before = dataMountOf(previous);
  const after = dataMountOf(next);
  if (before === after) return;
  const what = after === null ? "turns stateful off" : `moves data_mount from ${before} to ${after}`;
  throw new TabbifyError(
    "DATA_MOUNT_CONFLICT",
    `this deploy ${what}, which would drop the app's data; purge the app first to start over`,
    { user_fault: true, previous_data_mount: before },
  );
}

/**
 * Creates (or repairs) the app's data directory and returns it. Never follows a symlink planted
 * in its place: the path is checked with lstat and must be a real directory.
 */
export async function ensureAppData(
  dataRoot: string,
  uuid: string,
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
): Promise<string> {
  const parent = join(dataRoot, "app-data");
  await mkdir(parent, { recursive: true, mode: 0o711 });
  await chmod(parent, 0o711);
  const dir = appDataDir(dataRoot, uuid);
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  const info = await lstat(dir);
  if (!info.isDirectory()) {
    throw new TabbifyError("APP_DATA_INVALID", `the data directory of app ${uuid} is not a directory`);
  }
  const owner = user
    ? { uid: user.uid, gid: user.gid }
    : spec.runtime === "docker" && process.getuid?.() === 0
      ? { uid: NOBODY, gid: NOBODY }
      : undefined;
  if (owner && (info.uid !== owner.uid || info.gid !== owner.gid)) await lchown(dir, owner.uid, owner.gid);
  await chmod(dir, 0o700);
  return dir;
}

export async function purgeAppData(dataRoot: string, uuid: string): Promise<void> {
  await rm(appDataDir(dataRoot, uuid), { recursive: true, force: true });
}
