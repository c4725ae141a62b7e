import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, cp, lchown, mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";

/**
 * Who each app's workloads run as, when the supervisor runs as root: a uid of the app's own
 * (so one app can neither read another's files nor signal, trace or read the /proc of another's
 * processes), the app group (`--app-user`'s group), no supplementary groups, and a working
 * directory of its own:
 *
 *   <data>/                       0711 root: traversable, not listable
 *   <data>/workloads/             0711 root
 *   <data>/workloads/<uuid>/      0700 <app uid>:<app group>, the workload's HOME
 *   <data>/workloads/<uuid>/releases/<id>/   a copy of the artifact the workload runs from
 *
 * Every other entry of the data dir stays 0700/0600 root, so a workload reaches only its own
 * directory. Artifacts are copied (and chowned) into the app's directory rather than opened up
 * where they are: the artifact cache, an admin's spec directory and the supervisor's records
 * all stay unreadable.
 *
 * Uids come from 0x70000000 (1879048192) up, a range systemd documents as unused by distributions
 * and container managers: the first 4 bytes of sha256(uuid) pick one of 2^24, and a uid another
 * app of this supervisor holds is skipped. The uid is kept in the app's runner record.
 */

export const APP_UID_BASE = 0x7000_0000;
export const APP_UID_SPAN = 2 ** 24;

export interface AppUsersOptions {
  /** `<data>/workloads`. */
  root: string;
  /** The group every workload runs with. */
  gid: number;
}

export class AppUsers {
  constructor(readonly opts: AppUsersOptions) {}

  /**
   * The data dir and the workloads root become traversable by the app uids (0711), nothing more.
   * An ancestor that others cannot traverse (a 0700 `tabbify up` data dir) gets o+x, which lets
   * one pass through it without listing it; returns the directories so changed, for the log.
   */
  async init(dataDir: string): Promise<string[]> {
    const opened: string[] = [];
    for (let dir = dirname(resolve(dataDir)); dir !== dirname(dir); dir = dirname(dir)) {
      const info = await stat(dir);
      if ((info.mode & 0o001) === 0) {
        await chmod(dir, (info.mode & 0o7777) | 0o001);
        opened.push(dir);
      }
    }
    await chmod(dataDir, 0o711);
    await mkdir(this.opts.root, { recursive: true, mode: 0o711 });
    await chmod(this.opts.root, 0o711);
    return opened;
  }

  /** The app's uid: its hashed slot, or the next one no other app in `taken` holds. */
  allocate(uuid: string, taken: ReadonlySet<number>): number {
    const slot = createHash("sha256").update(uuid).digest().readUInt32BE(0) % APP_UID_SPAN;
    for (let i = 0; i < APP_UID_SPAN; i++) {
      const uid = APP_UID_BASE + ((slot + i) % APP_UID_SPAN);
      if (!taken.has(uid)) return uid;
    }
    throw new Error("every app uid is taken");
  }

  homeOf(uuid: string): string {
    return join(this.opts.root, uuid);
  }

  /** Creates (or repairs) the app's directory: 0700, owned by its uid and the app group. */
  async userFor(uuid: string, uid: number): Promise<WorkloadUser> {
    const home = this.homeOf(uuid);
    await mkdir(home, { recursive: true, mode: 0o700 });
    await lchown(home, uid, this.opts.gid);
    await chmod(home, 0o700);
    return { uid, gid: this.opts.gid, home };
  }

  /**
   * A copy of the spec's artifact directory in the app's directory, owned by the app: the spec
   * to hand the runner. A spec without an artifact directory (docker) is returned as it is.
   */
  async stage(spec: WorkloadSpec, user: WorkloadUser): Promise<WorkloadSpec> {
    if (spec.artifactDir === undefined) return spec;
    const releases = join(user.home, "releases");
    await mkdir(releases, { recursive: true, mode: 0o700 });
    await lchown(releases, user.uid, user.gid);
    const target = join(releases, `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`);
    // Symlinks are copied as links: followed later, they resolve with the app's uid, not root's.
    await cp(resolve(spec.artifactDir), target, { recursive: true, verbatimSymlinks: true });
    await chownTree(target, user.uid, user.gid);
    return { ...spec, artifactDir: target };
  }

  /** Whether a staged copy is still there (a respawn reuses it). */
  async isStaged(path: string | undefined, uuid: string): Promise<boolean> {
    if (!path || !this.owns(uuid, path)) return false;
    return (await stat(path).catch(() => undefined))?.isDirectory() === true;
  }

  /** Removes staged copies of the app other than `keep`. */
  async pruneReleases(uuid: string, keep: ReadonlySet<string>): Promise<void> {
    const releases = join(this.homeOf(uuid), "releases");
    const names = await readdir(releases).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(releases, name);
      if (!keep.has(path)) await rm(path, { recursive: true, force: true });
    }
  }

  /** Removes everything the app's workloads had or wrote here. */
  async purge(uuid: string): Promise<void> {
    await rm(this.homeOf(uuid), { recursive: true, force: true });
  }

  private owns(uuid: string, path: string): boolean {
    return resolve(path).startsWith(`${join(this.homeOf(uuid), "releases")}/`);
  }
}

/** lchown over a whole tree, never following a symlink. */
async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await lchown(path, uid, gid);
  const entries = await readdir(path, { withFileTypes: true });
  for (const entry of entries) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else await lchown(child, uid, gid);
  }
}

export interface SystemUser {
  name: string;
  uid: number;
  gid: number;
}

const run = promisify(execFile);

/** The passwd entry of `name`, undefined when there is none. */
export async function lookupUser(name: string): Promise<SystemUser | undefined> {
  try {
    const { stdout } = await run("getent", ["passwd", name], { timeout: 10_000 });
    const fields = stdout.trim().split(":");
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    if (fields[0] !== name || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
    return { name, uid, gid };
  } catch {
    return undefined;
  }
}

/**
 * The `--app-user` account: looked up, and created as a system user with a group of its own
 * (no home, no login shell) when it is the default name and missing. Falls back to `nobody`
 * when it cannot be created; `why` says what happened, for the log. A name that was asked for
 * explicitly and does not exist is an error.
 */
export async function ensureAppUser(
  name: string,
  createIfMissing: boolean,
): Promise<{ user: SystemUser; why?: string }> {
  const found = await lookupUser(name);
  if (found) return { user: found };
  if (!createIfMissing) throw new Error(`--app-user ${name}: there is no such user`);
  let why = `no user ${name}`;
  try {
    await run(
      "useradd",
      [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name,
      ],
      { timeout: 30_000 },
    );
    const created = await lookupUser(name);
    if (created) return { user: created, why: `created system user ${name}` };
  } catch (err) {
    // Another supervisor may have created it just now.
    const raced = await lookupUser(name);
    if (raced) return { user: raced };
    why = `cannot create user ${name}: ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`;
  }
  const nobody = await lookupUser("nobody");
  if (!nobody) throw new Error(`${why}, and there is no user nobody to fall back to`);
  return { user: nobody, why: `${why}; using nobody` };
}
