import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { isLowercaseUuid } from "../core/uuid.js";
import type { StorageDriver } from "../storage/driver.js";
import { type AppManifest, parseManifest } from "./manifest.js";

/**
 * The artifact store: where `tcli push` publishes app versions and supervisors fetch them.
 *
 *   apps/<uuid>/latest                 body "<N>": the newest complete version not withdrawn
 *   apps/<uuid>/.withdrawn/v<N>        v<N> failed to start when pushed: `latest` skips it
 *   apps/<uuid>/v<N>/.claim            who claimed version N (exclusive create; never reused)
 *   apps/<uuid>/v<N>/manifest.toml     stamped with [app].id; written after every other file
 *   apps/<uuid>/v<N>/<files…>          the app directory, by relative path
 *   apps/<uuid>/v<N>/image.tar.gz      `docker save | gzip` of tbf-img-<uuid>-v<N> (docker builds)
 *
 * Invariants, which make a reader safe without locks:
 * - a version's `manifest.toml` exists only once all its other files do (it is uploaded last),
 *   so "manifest present" means "version complete";
 * - `latest` only ever names a complete version and never moves backwards, even when pushes of
 *   v<N> and v<N+1> finish in the opposite order (see `publishLatest`), with one exception: a
 *   push whose start failed takes it back off its version (`withdrawLatest`);
 * - a version number is claimed by exactly one push: `putContentIfAbsent` on `.claim` where the
 *   store makes that exclusive; a failed push gives its number back (`releaseClaim`) unless a
 *   higher one is claimed already, and then the number is skipped.
 * - `v<N>/` is the push's staging area until its manifest lands: readers refuse a version
 *   without one (`readManifest`, `listFiles`, `fetchFile`, `downloadVersion`), a failed push
 *   removes what it uploaded (`discardVersion`), and files a killed push left behind are removed
 *   by a later push once their claim is `ABANDONED_AFTER_MS` old (`sweepAbandoned`).
 */
export const MANIFEST_FILE = "manifest.toml";
export const IMAGE_FILE = "image.tar.gz";
export const CLAIM_FILE = ".claim";
/** Names a pushed app directory cannot use at its top level: the store's own files live there. */
export const RESERVED_FILES = [CLAIM_FILE] as const;

export function appPrefix(uuid: string): string {
  return `apps/${uuid}`;
}
export function latestKey(uuid: string): string {
  return `apps/${uuid}/latest`;
}
export function versionPrefix(uuid: string, version: number): string {
  return `apps/${uuid}/v${version}`;
}
export function versionKey(uuid: string, version: number, path: string): string {
  return `${versionPrefix(uuid, version)}/${path}`;
}
/** Marks a complete version whose start failed: `latest` never names it again (withdrawLatest). */
function withdrawnKey(uuid: string, version: number): string {
  return `apps/${uuid}/.withdrawn/v${version}`;
}
/** Per-contender claim markers, used only where the store has no exclusive create (see claimByListing). */
function contenderPrefix(uuid: string, version: number): string {
  return `apps/${uuid}/.claims/v${version}`;
}

export interface ArtifactFile {
  /** Relative to the version directory, `/`-separated. */
  path: string;
  size: number;
}

export interface ClaimRecord {
  /** ISO time of the claim. */
  claimedAt: string;
  /** Free-form, for people reading the bucket: which tool and host pushed. */
  by: string;
}

export interface ArtifactStoreOptions {
  /**
   * Where copies of files are staged before `ingest` publishes them. Best on the store's own
   * filesystem (the local driver's staging dir) so publishing is a rename; any dir works.
   */
  stagingDir?: string;
}

/** A version claimed this long ago and still without a manifest belongs to a push that died. */
export const ABANDONED_AFTER_MS = 24 * 60 * 60 * 1000;
/** Files up to this size are uploaded from memory with one `putContent`; larger ones are staged and ingested. */
const SMALL_FILE_LIMIT = 1024 * 1024;
/** A version number contended this many times in a row is given up on (a store misbehaving, not bad luck). */
const MAX_CLAIM_ATTEMPTS = 200;

export class ArtifactStore {
  readonly driver: StorageDriver;
  private readonly stagingDir: string;

  constructor(driver: StorageDriver, opts: ArtifactStoreOptions = {}) {
    this.driver = driver;
    this.stagingDir = opts.stagingDir ?? join(tmpdir(), "tabbify-artifacts-staging");
  }

  // ---------------------------------------------------------------- reader API (supervisors)

  /** The newest complete version of an app, or null when the store has none. */
  async latestVersion(uuid: string): Promise<number | null> {
    checkUuid(uuid);
    const body = await this.driver.getContent(latestKey(uuid));
    if (body === null) return null;
    const text = body.toString("utf8").trim();
    if (!/^[1-9]\d*$/.test(text)) {
      throw new TabbifyError("ARTIFACT_CORRUPT", `${latestKey(uuid)} does not hold a version number`, {
        key: latestKey(uuid),
      });
    }
    return Number(text);
  }

  /** Every complete version (manifest present) of an app, ascending. */
  async versions(uuid: string): Promise<number[]> {
    checkUuid(uuid);
    const numbers = await this.claimedVersions(uuid);
    const complete = await Promise.all(
      numbers.map(async (n) => ((await this.driver.stat(versionKey(uuid, n, MANIFEST_FILE))) ? n : null)),
    );
    return complete.filter((n): n is number => n !== null);
  }

  /** The version's manifest, parsed, and its source text. ARTIFACT_NOT_FOUND when absent. */
  async readManifest(uuid: string, version: number): Promise<{ manifest: AppManifest; source: string }> {
    checkUuid(uuid);
    const key = versionKey(uuid, version, MANIFEST_FILE);
    const body = await this.driver.getContent(key);
    if (body === null) {
      throw new TabbifyError("ARTIFACT_NOT_FOUND", `app ${uuid} has no complete version ${version}`, {
        uuid,
        version,
      });
    }
    const source = body.toString("utf8");
    return { manifest: parseManifest(source, key), source };
  }

  /** Streams one file of a complete version. ARTIFACT_NOT_FOUND when absent or not complete. */
  async fetchFile(uuid: string, version: number, path: string): Promise<Readable> {
    checkUuid(uuid);
    checkRelativePath(path);
    await this.requireComplete(uuid, version);
    return this.readFile(uuid, version, path);
  }

  private async requireComplete(uuid: string, version: number): Promise<void> {
    if ((await this.driver.stat(versionKey(uuid, version, MANIFEST_FILE))) === null) {
      throw new TabbifyError("ARTIFACT_NOT_FOUND", `app ${uuid} has no complete version ${version}`, {
        uuid,
        version,
      });
    }
  }

  private async readFile(uuid: string, version: number, path: string): Promise<Readable> {
    try {
      return await this.driver.read(versionKey(uuid, version, path));
    } catch (err) {
      if (isTabbifyError(err, "PATH_NOT_FOUND")) {
        throw new TabbifyError("ARTIFACT_NOT_FOUND", `app ${uuid} v${version} has no file ${path}`, {
          uuid,
          version,
          path,
        });
      }
      throw err;
    }
  }

  /**
   * Every file of a complete version (the claim marker excluded), sorted by path.
   * ARTIFACT_NOT_FOUND when the version has no manifest: a push is still staging it, or failed.
   */
  async listFiles(uuid: string, version: number): Promise<ArtifactFile[]> {
    checkUuid(uuid);
    await this.requireComplete(uuid, version);
    return this.stagedFiles(uuid, version);
  }

  /** Every file under `v<N>/`, complete or not (the claim marker excluded). */
  private async stagedFiles(uuid: string, version: number): Promise<ArtifactFile[]> {
    const root = versionPrefix(uuid, version);
    const out: ArtifactFile[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      const names = await this.driver.list(dir);
      const entries = await Promise.all(
        names.map(async (name) => ({ name, info: await this.driver.stat(`${dir}/${name}`) })),
      );
      for (const { name, info } of entries) {
        const path = rel === "" ? name : `${rel}/${name}`;
        if (info) {
          if (path !== CLAIM_FILE) out.push({ path, size: info.size });
        } else {
          await walk(`${dir}/${name}`, path);
        }
      }
    };
    await walk(root, "");
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /**
   * Downloads a whole version into `destDir`, which appears only once complete (files land in a
   * sibling temp dir that is renamed into place). `destDir` must not exist yet.
   */
  async downloadVersion(
    uuid: string,
    version: number,
    destDir: string,
    opts: { include?: (path: string) => boolean } = {},
  ): Promise<{ files: ArtifactFile[]; bytes: number }> {
    const files = (await this.listFiles(uuid, version)).filter((f) => opts.include?.(f.path) ?? true);
    const target = resolve(destDir);
    const partial = `${target}.partial-${randomBytes(6).toString("hex")}`;
    await mkdir(partial, { recursive: true });
    try {
      for (const f of files) {
        const local = resolve(partial, ...f.path.split("/"));
        if (!local.startsWith(partial + sep))
          throw new Error(`artifact path escapes the directory: ${f.path}`);
        await mkdir(dirname(local), { recursive: true });
        await pipeline(await this.readFile(uuid, version, f.path), createWriteStream(local));
      }
      await rename(partial, target);
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      throw err;
    }
    return { files, bytes: files.reduce((sum, f) => sum + f.size, 0) };
  }

  // ---------------------------------------------------------------- writer API (tcli push)

  /**
   * Claims the first free version number at or above `from` and returns it. Exactly one caller
   * gets each number, across processes, as far as the driver's exclusive create reaches; where
   * the store only offers per-instance exclusivity (an S3-compatible server ignoring
   * If-None-Match) a listing protocol takes over.
   */
  async claimVersion(uuid: string, from: number, record: ClaimRecord): Promise<number> {
    checkUuid(uuid);
    if (!Number.isSafeInteger(from) || from < 1)
      throw new Error(`version must be a positive integer, got ${from}`);
    const body = `${JSON.stringify(record)}\n`;
    const scope = await this.driver.exclusiveCreateScope();
    let version = from;
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
      if (scope === "store") {
        if (await this.driver.putContentIfAbsent(versionKey(uuid, version, CLAIM_FILE), body)) return version;
        version++;
        continue;
      }
      const outcome = await this.claimByListing(uuid, version, body);
      if (outcome === "won") return version;
      if (outcome === "taken") version++;
      else await sleep(20 + Math.floor(Math.random() * 180));
    }
    throw new TabbifyError(
      "VERSION_CLAIM_FAILED",
      `could not claim a version of app ${uuid} after ${MAX_CLAIM_ATTEMPTS} attempts`,
    );
  }

  /**
   * Exclusive claim from plain put + list, for stores whose conditional create is not global.
   * Each contender writes its own marker, then lists: it wins only when it sees no other marker.
   * With read-after-write consistent listings two contenders can never both see only themselves
   * (whoever lists second sees the first), and a winner's marker stays forever, so no later
   * contender can win either. Contenders who see each other withdraw and retry after a random
   * pause, so the number is not skipped for nothing.
   */
  private async claimByListing(
    uuid: string,
    version: number,
    body: string,
  ): Promise<"won" | "taken" | "contended"> {
    const claimKey = versionKey(uuid, version, CLAIM_FILE);
    const prefix = contenderPrefix(uuid, version);
    if ((await this.driver.stat(claimKey)) !== null) return "taken";
    if ((await this.driver.list(prefix)).length > 0) return "taken";
    const marker = randomBytes(12).toString("hex");
    await this.driver.putContent(`${prefix}/${marker}`, body);
    const contenders = await this.driver.list(prefix);
    if (contenders.length === 1 && contenders[0] === marker) {
      await this.driver.putContent(claimKey, body);
      return "won";
    }
    await this.driver.delete(`${prefix}/${marker}`);
    return "contended";
  }

  /** Uploads a small in-memory file into a version. */
  async putContent(uuid: string, version: number, path: string, content: Buffer | string): Promise<void> {
    checkRelativePath(path);
    await this.driver.putContent(versionKey(uuid, version, path), content);
  }

  /**
   * Uploads a local file into a version without reading it whole. The source is left in place;
   * FILE_CHANGED when its size is no longer `size` (it changed while pushing).
   */
  async putFile(uuid: string, version: number, path: string, localFile: string, size: number): Promise<void> {
    checkRelativePath(path);
    const key = versionKey(uuid, version, path);
    if (size <= SMALL_FILE_LIMIT) {
      const content = await readFile(localFile);
      if (content.length !== size) throw fileChanged(localFile, size, content.length);
      await this.driver.putContent(key, content);
      return;
    }
    await mkdir(this.stagingDir, { recursive: true });
    const staged = join(this.stagingDir, `${Date.now()}-${randomBytes(8).toString("hex")}`);
    try {
      // A copy, not a link: the store must not share an inode the user may edit in place.
      await copyFile(localFile, staged);
      const actual = (await stat(staged)).size;
      if (actual !== size) throw fileChanged(localFile, size, actual);
      await this.driver.ingest(key, staged, size);
    } finally {
      await unlink(staged).catch(() => {});
    }
  }

  /** Publishes a finished local file (consumed) into a version, e.g. a freshly saved image. */
  async ingestFile(
    uuid: string,
    version: number,
    path: string,
    localFile: string,
    size: number,
  ): Promise<void> {
    checkRelativePath(path);
    await this.driver.ingest(versionKey(uuid, version, path), localFile, size);
  }

  /**
   * Deletes every version of the app and its `latest` (`tcli rm --artifacts`); returns the
   * version numbers that were there. Supervisors that cached a version keep their copy until
   * purged.
   */
  async deleteApp(uuid: string): Promise<number[]> {
    checkUuid(uuid);
    const versions = await this.claimedVersions(uuid);
    await this.driver.delete(appPrefix(uuid));
    return versions;
  }

  /**
   * Removes what a failed push uploaded into `v<N>/`, keeping only its claim (so the number stays
   * taken and is skipped). Refuses a version whose manifest is already stored: that one is
   * complete and `latest` may name it.
   */
  async discardVersion(uuid: string, version: number): Promise<void> {
    checkUuid(uuid);
    if ((await this.driver.stat(versionKey(uuid, version, MANIFEST_FILE))) !== null) {
      throw new Error(`refusing to discard v${version} of ${uuid}: it is complete`);
    }
    const names = await this.driver.list(versionPrefix(uuid, version));
    for (const name of names) {
      if (name !== CLAIM_FILE) await this.driver.delete(versionKey(uuid, version, name));
    }
  }

  /**
   * Gives a failed push's number back: once `discardVersion` has emptied `v<N>/`, its claim is
   * removed too, so the next push takes N again instead of skipping it. Only while N is the
   * highest claimed version (a higher claim means a later push already counted past it; freeing
   * N then would let a lower number be published after a higher one). Returns whether it did.
   */
  async releaseClaim(uuid: string, version: number): Promise<boolean> {
    checkUuid(uuid);
    if ((await this.driver.stat(versionKey(uuid, version, MANIFEST_FILE))) !== null) return false;
    if ((await this.stagedFiles(uuid, version)).length > 0) return false;
    if (Math.max(0, ...(await this.claimedVersions(uuid))) > version) return false;
    await this.driver.delete(contenderPrefix(uuid, version));
    await this.driver.delete(versionPrefix(uuid, version));
    return true;
  }

  /**
   * Discards the files of versions whose push died before cleaning up: no manifest, and claimed
   * at least `olderThanMs` ago (a live push may take long; its claim is what dates it). Returns
   * the versions swept.
   */
  async sweepAbandoned(uuid: string, opts: { olderThanMs?: number; now?: Date } = {}): Promise<number[]> {
    checkUuid(uuid);
    const cutoff = (opts.now ?? new Date()).getTime() - (opts.olderThanMs ?? ABANDONED_AFTER_MS);
    const swept: number[] = [];
    for (const n of await this.claimedVersions(uuid)) {
      if ((await this.driver.stat(versionKey(uuid, n, MANIFEST_FILE))) !== null) continue;
      const files = await this.stagedFiles(uuid, n);
      if (files.length === 0) continue;
      const claimedAt = claimTime(await this.driver.getContent(versionKey(uuid, n, CLAIM_FILE)));
      if (claimedAt === null || claimedAt > cutoff) continue;
      await this.discardVersion(uuid, n);
      swept.push(n);
    }
    return swept;
  }

  /**
   * Points `latest` at the newest complete version, `version` or above, and returns what
   * `latest` holds afterwards. Never moves it backwards: when v<N+1> finished first, finishing
   * v<N> leaves `latest` at N+1. Two publishers can interleave read and write; each re-checks
   * after writing for a complete version above what it wrote, so the last writer always leaves
   * the highest complete version in place. Throws when `version` itself is not complete.
   */
  async publishLatest(uuid: string, version: number): Promise<number> {
    checkUuid(uuid);
    if ((await this.driver.stat(versionKey(uuid, version, MANIFEST_FILE))) === null) {
      throw new Error(`refusing to publish v${version} of ${uuid}: its manifest is not uploaded`);
    }
    let target = version;
    for (;;) {
      const current = (await this.latestVersion(uuid)) ?? 0;
      if (target > current) await this.driver.putContent(latestKey(uuid), String(target));
      const floor = Math.max(target, current);
      const higher = await this.highestCompleteAbove(uuid, floor);
      if (higher === null) return floor;
      target = higher;
    }
  }

  /**
   * Takes `latest` off v<N>, whose start failed (a push's rollout), unless the user asked to keep
   * it (`tcli push --keep-latest`). v<N> stays in the store, complete, but is marked withdrawn, so
   * no later publish moves `latest` back onto it; `latest` goes to the newest complete version
   * below N that is not withdrawn, or is removed when there is none. When `latest` has already
   * moved past N (a later push), it is left alone. Returns what `latest` holds afterwards.
   */
  async withdrawLatest(uuid: string, version: number): Promise<number | null> {
    checkUuid(uuid);
    await this.driver.putContent(
      withdrawnKey(uuid, version),
      JSON.stringify({ withdrawnAt: new Date().toISOString() }),
    );
    const current = await this.latestVersion(uuid);
    if (current !== version) return current;
    const below = (await this.claimedVersions(uuid)).filter((n) => n < version).reverse();
    for (const n of below) {
      if (await this.publishable(uuid, n)) {
        await this.driver.putContent(latestKey(uuid), String(n));
        return n;
      }
    }
    await this.driver.delete(latestKey(uuid));
    return null;
  }

  /** Whether `version` was withdrawn after a failed start. */
  async isWithdrawn(uuid: string, version: number): Promise<boolean> {
    checkUuid(uuid);
    return (await this.driver.stat(withdrawnKey(uuid, version))) !== null;
  }

  /** Complete, and not withdrawn: a version `latest` may name. */
  private async publishable(uuid: string, version: number): Promise<boolean> {
    if ((await this.driver.stat(versionKey(uuid, version, MANIFEST_FILE))) === null) return false;
    return (await this.driver.stat(withdrawnKey(uuid, version))) === null;
  }

  private async highestCompleteAbove(uuid: string, floor: number): Promise<number | null> {
    const candidates = (await this.claimedVersions(uuid)).filter((n) => n > floor).reverse();
    for (const n of candidates) {
      if (await this.publishable(uuid, n)) return n;
    }
    return null;
  }

  /** Version numbers that have a directory, complete or not, ascending. */
  private async claimedVersions(uuid: string): Promise<number[]> {
    const names = await this.driver.list(appPrefix(uuid));
    return names
      .map((name) => /^v([1-9]\d*)$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }
}

/** When a claim was made, from its record; null when it cannot be read (then it is left alone). */
function claimTime(body: Buffer | null): number | null {
  if (body === null) return null;
  try {
    const at = Date.parse((JSON.parse(body.toString("utf8")) as Partial<ClaimRecord>).claimedAt ?? "");
    return Number.isNaN(at) ? null : at;
  } catch {
    return null;
  }
}

function checkUuid(uuid: string): void {
  if (!isLowercaseUuid(uuid)) throw new TabbifyError("APP_ID_INVALID", `not a lowercase UUID: "${uuid}"`);
}

function checkRelativePath(path: string): void {
  if (
    path === "" ||
    path.startsWith("/") ||
    path.split("/").some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new TabbifyError("PATH_INVALID", `invalid artifact path: ${JSON.stringify(path)}`);
  }
}

function fileChanged(file: string, expected: number, actual: number): TabbifyError {
  return new TabbifyError(
    "FILE_CHANGED",
    `${file} changed while pushing (${expected} bytes planned, ${actual} found): push again`,
    { file },
  );
}
