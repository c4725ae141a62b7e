import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { MeshMode } from "../core/address.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { WorkloadSpec } from "../runtimes/runtime.js";

/**
 * One record per runner under `<data>/runners/<uuid>.json`: what the supervisor needs to find,
 * prove and respawn a runner after it restarts itself. Written by temp file + rename so a
 * kill -9 at any moment leaves either the old or the new record, never half of one.
 */

export interface RestartState {
  consecutive_failures: number;
  last_exit_at: string | null;
  next_retry_at: string | null;
  last_healthy_at: string | null;
}

export interface RunnerRecord {
  uuid: string;
  /** The runner's pid (its own process group leader); null while it is not running. */
  pid: number | null;
  control_sock: string;
  /** The app's ULA: its identity, whatever the mesh mode. */
  app_ula: string;
  /** Where the runner serves: `<app address>:8730`. */
  bound_addr: string;
  mesh: MeshMode;
  /** The supervisor's name. */
  parent: string;
  spawned_at: string | null;
  restart: RestartState;
  /** The workload to run. Its env is kept because a respawn needs it; the file is 0600. */
  spec: WorkloadSpec;
  /** Last workload pid seen through the control socket, so a dead runner's orphan can be stopped. */
  workload_pid: number | null;
  image_ref?: string;
  /** `v<N>` when the workload came from the artifact store; absent for apps started from a spec. */
  artifact_version?: string;
  /** The uid the app's workloads run as (see app-users.ts); absent when the supervisor is not root. */
  app_uid?: number;
  /** The copy of the artifact the app's runner runs from, in the app's own directory. */
  staged_artifact_dir?: string;
  /** Parked after too many failures: no respawn until a redeploy or reset. */
  crash_looped: boolean;
  stopped: boolean;
}

export function freshRestartState(): RestartState {
  return { consecutive_failures: 0, last_exit_at: null, next_retry_at: null, last_healthy_at: null };
}

const uuidFile = /^([0-9a-f-]{36})\.json$/;

export class RecordStore {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  pathOf(uuid: string): string {
    return join(this.dir, `${uuid}.json`);
  }

  async read(uuid: string): Promise<RunnerRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.pathOf(uuid), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as RunnerRecord;
    } catch {
      throw new TabbifyError("RECORD_CORRUPT", `runner record for ${uuid} is not valid JSON`);
    }
  }

  /** Atomic: temp file (0600, fsynced) in the same directory, then rename over the record. */
  async write(record: RunnerRecord): Promise<void> {
    const target = this.pathOf(record.uuid);
    const temp = join(this.dir, `.${record.uuid}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    const fh = await open(temp, "wx", 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(record, null, 2)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
  }

  async remove(uuid: string): Promise<void> {
    await unlink(this.pathOf(uuid)).catch((err: unknown) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });
  }

  /** The uuids with a record; leftover temp files of an interrupted write are ignored. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw err;
    }
    return names.flatMap((n) => uuidFile.exec(n)?.[1] ?? []).sort();
  }
}
