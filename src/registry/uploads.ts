import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { type Digest, type DigestAlgorithm, newHasher } from "../core/digest.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import { isLowercaseUuid } from "../core/uuid.js";

/**
 * Blob upload sessions, staged as plain files on local disk:
 *
 *   <stagingDir>/<upload id>/info.json   { repository, algorithm, startedAt }
 *   <stagingDir>/<upload id>/data        the bytes received so far
 *
 * The staging dir must be on the same filesystem as the local driver's root (so `ingest` is a
 * rename) and on local disk for the S3 driver (which uploads from it). Nothing here is visible
 * as a blob: a blob appears only when the service ingests a finished, verified file. A process
 * killed mid-upload leaves a session that nobody reads and that `cleanupStale` removes later.
 *
 * The running hash lives in memory keyed by upload id; when it is missing or does not match the
 * staged size (restart, failed chunk), it is rebuilt by re-reading the staged file.
 *
 * Open sessions are capped per namespace (a repository's first component: the tenant, under
 * the namespace rule), so that one tenant cannot fill the disk or the staging dir with sessions
 * it never finishes: past the cap, `create` is TOOMANYREQUESTS (429). Sessions left by an
 * earlier process count too (they are found at the first `create`), until finished, cancelled
 * or swept as stale. Directories are created 0700 and files 0600.
 */
export interface UploadState {
  id: string;
  repository: string;
  /** Bytes received so far; the next chunk must start here. */
  size: number;
  startedAt: number;
}

interface Info {
  repository: string;
  algorithm: DigestAlgorithm;
  startedAt: number;
}

interface RunningHash {
  algorithm: DigestAlgorithm;
  hash: ReturnType<typeof newHasher>;
  size: number;
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** Writes are gathered into batches of about this size: fewer syscalls, bounded memory. */
const writeBatchBytes = 1024 * 1024;

export interface AppendOptions {
  /** From Content-Range: the chunk must start at the current size. */
  start?: number;
  /** From Content-Range (inclusive end): the chunk must have exactly end-start+1 bytes. */
  end?: number;
  /** From Content-Length: the chunk must have exactly this many bytes. */
  length?: number;
}

export class UploadStore {
  private readonly hashes = new Map<string, RunningHash>();
  /**
   * info.json by upload id. The file is written once and never changed, so a cached copy is only
   * ever stale by existing after a removal this process did not make; the staged-size check that
   * every caller does next reports such an upload as unknown all the same.
   */
  private readonly infos = new Map<string, Info>();
  /** Uploads with a request writing to them right now: one writer at a time. */
  private readonly busy = new Set<string>();
  /** Open session ids by namespace, and each id's namespace. */
  private readonly openByNamespace = new Map<string, Set<string>>();
  private readonly namespaceOf = new Map<string, string>();
  private counted: Promise<void> | undefined;

  constructor(
    readonly stagingDir: string,
    private readonly staleAfterMs: number,
    /** Open sessions one namespace may hold at once. */
    readonly maxOpenPerNamespace = Number.POSITIVE_INFINITY,
  ) {}

  /** How many sessions `namespace` holds open (for tests and reports). */
  async openCount(namespace: string): Promise<number> {
    await this.countExisting();
    return this.openByNamespace.get(namespace)?.size ?? 0;
  }

  /** Counts the sessions an earlier process left in the staging dir, once. */
  private countExisting(): Promise<void> {
    this.counted ??= (async () => {
      let entries: string[];
      try {
        entries = await readdir(this.stagingDir);
      } catch (err) {
        if (isErrno(err, "ENOENT")) return;
        throw err;
      }
      for (const id of entries) {
        if (!isLowercaseUuid(id) || this.namespaceOf.has(id)) continue;
        const raw = await readFile(join(this.dir(id), "info.json"), "utf8").catch(() => undefined);
        const repository =
          raw === undefined ? undefined : (safeJson(raw) as Partial<Info> | undefined)?.repository;
        if (typeof repository === "string") this.track(id, repository);
      }
    })();
    return this.counted;
  }

  private track(id: string, repository: string): void {
    const namespace = repository.split("/", 1)[0] ?? repository;
    const ids = this.openByNamespace.get(namespace) ?? new Set<string>();
    this.openByNamespace.set(namespace, ids);
    ids.add(id);
    this.namespaceOf.set(id, namespace);
  }

  private untrack(id: string): void {
    const namespace = this.namespaceOf.get(id);
    if (namespace === undefined) return;
    this.namespaceOf.delete(id);
    const ids = this.openByNamespace.get(namespace);
    ids?.delete(id);
    if (ids?.size === 0) this.openByNamespace.delete(namespace);
  }

  private dir(id: string): string {
    return join(this.stagingDir, id);
  }

  dataFile(id: string): string {
    return join(this.dir(id), "data");
  }

  async create(repository: string, algorithm: DigestAlgorithm = "sha256"): Promise<UploadState> {
    await this.countExisting();
    const namespace = repository.split("/", 1)[0] ?? repository;
    const open = this.openByNamespace.get(namespace)?.size ?? 0;
    if (open >= this.maxOpenPerNamespace) {
      throw new TabbifyError(
        "TOOMANYREQUESTS",
        `${namespace} has ${open} open upload sessions, the most one tenant may hold: finish or cancel one (DELETE its Location) first`,
        { limit: this.maxOpenPerNamespace },
      );
    }
    const id = crypto.randomUUID();
    // Counted before the first await, so concurrent creates cannot all pass the check.
    this.track(id, repository);
    const startedAt = Date.now();
    const info: Info = { repository, algorithm, startedAt };
    try {
      await mkdir(this.dir(id), { recursive: true, mode: 0o700 });
      await writeFile(this.dataFile(id), "", { mode: 0o600 });
      await writeFile(join(this.dir(id), "info.json"), JSON.stringify(info), { mode: 0o600 });
    } catch (err) {
      this.untrack(id);
      await rm(this.dir(id), { recursive: true, force: true });
      throw err;
    }
    this.infos.set(id, info);
    this.hashes.set(id, { algorithm, hash: newHasher(algorithm), size: 0 });
    return { id, repository, size: 0, startedAt };
  }

  private async info(repository: string, id: string): Promise<Info> {
    const unknown = () =>
      new TabbifyError("BLOB_UPLOAD_UNKNOWN", `no upload "${id.slice(0, 80)}" in ${repository}`, {
        upload: id.slice(0, 80),
      });
    if (!isLowercaseUuid(id)) throw unknown();
    const cached = this.infos.get(id);
    if (cached) {
      if (cached.repository !== repository) throw unknown();
      return cached;
    }
    let raw: string;
    try {
      raw = await readFile(join(this.dir(id), "info.json"), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) throw unknown();
      throw err;
    }
    const info = JSON.parse(raw) as Info;
    if (info.repository !== repository) throw unknown();
    this.infos.set(id, info);
    return info;
  }

  private async stagedSize(id: string): Promise<number> {
    try {
      return (await stat(this.dataFile(id))).size;
    } catch (err) {
      if (isErrno(err, "ENOENT"))
        throw new TabbifyError("BLOB_UPLOAD_UNKNOWN", `upload "${id}" has no staged data`);
      throw err;
    }
  }

  async status(repository: string, id: string): Promise<UploadState> {
    const info = await this.info(repository, id);
    return { id, repository, size: await this.stagedSize(id), startedAt: info.startedAt };
  }

  /** The running hash of the staged bytes, rebuilt from the file when memory lost track. */
  private async runningHash(id: string, algorithm: DigestAlgorithm, size: number): Promise<RunningHash> {
    const known = this.hashes.get(id);
    if (known && known.algorithm === algorithm && known.size === size) return known;
    const hash = newHasher(algorithm);
    let hashed = 0;
    if (size > 0) {
      for await (const chunk of createReadStream(this.dataFile(id), {
        end: size - 1,
        highWaterMark: writeBatchBytes,
      })) {
        hash.update(chunk as Buffer);
        hashed += (chunk as Buffer).length;
      }
    }
    const rebuilt: RunningHash = { algorithm, hash, size: hashed };
    this.hashes.set(id, rebuilt);
    return rebuilt;
  }

  /**
   * Appends a request body to an upload. A chunk that does not start at the current size is
   * refused with RANGE_INVALID (detail.size says where it must start); a chunk whose length
   * differs from what the client declared is cut off again and refused with SIZE_INVALID.
   * On any failure the staged file is truncated back, so a retry starts from a clean state.
   */
  async append(
    repository: string,
    id: string,
    body: Readable,
    opts: AppendOptions = {},
  ): Promise<UploadState> {
    const info = await this.info(repository, id);
    if (this.busy.has(id)) {
      throw new TabbifyError("RANGE_INVALID", "another request is writing to this upload", {
        upload: id,
        size: await this.stagedSize(id),
      });
    }
    this.busy.add(id);
    try {
      const offset = await this.stagedSize(id);
      if (opts.start !== undefined && opts.start !== offset) {
        throw new TabbifyError(
          "RANGE_INVALID",
          `chunk starts at byte ${opts.start} but the upload has ${offset} bytes: send the chunk starting at ${offset}`,
          { upload: id, size: offset },
        );
      }
      const expected =
        opts.start !== undefined && opts.end !== undefined ? opts.end - opts.start + 1 : opts.length;
      if (opts.length !== undefined && expected !== undefined && opts.length !== expected) {
        throw new TabbifyError(
          "SIZE_INVALID",
          `Content-Length ${opts.length} does not match Content-Range (${expected} bytes)`,
          { upload: id },
        );
      }
      const running = await this.runningHash(id, info.algorithm, offset);
      const written = await this.writeAt(id, offset, body, running, expected);
      if (expected !== undefined && written !== expected) {
        await this.truncate(id, offset);
        throw new TabbifyError("SIZE_INVALID", `chunk has ${written} bytes, ${expected} were declared`, {
          upload: id,
        });
      }
      return { id, repository, size: offset + written, startedAt: info.startedAt };
    } finally {
      this.busy.delete(id);
    }
  }

  private async truncate(id: string, size: number): Promise<void> {
    this.hashes.delete(id);
    const fh = await open(this.dataFile(id), "r+");
    try {
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
  }

  /**
   * Streams `body` into the staged file at `offset`, hashing as it goes. One write is in flight
   * while the next batch is gathered, and the body is read only as fast as the disk takes it
   * (backpressure through `for await`), so memory stays at about two batches.
   */
  private async writeAt(
    id: string,
    offset: number,
    body: Readable,
    running: RunningHash,
    limit: number | undefined,
  ): Promise<number> {
    const fh = await open(this.dataFile(id), "r+");
    let position = offset;
    let inflight: Promise<unknown> = Promise.resolve();
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let received = 0;
    const flush = async () => {
      await inflight;
      const buffers = batch;
      const at = position;
      position += batchBytes;
      batch = [];
      batchBytes = 0;
      inflight = fh.writev(buffers, at);
      // Observed here so a failure while the loop waits for the socket is not unhandled;
      // the next `await inflight` still sees it.
      inflight.catch(() => {});
    };
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        received += buf.length;
        // Past the declared size the chunk is refused anyway (by the caller); keep reading so the
        // connection stays usable for the error reply, but stop writing.
        if (limit !== undefined && received > limit) continue;
        running.hash.update(buf);
        batch.push(buf);
        batchBytes += buf.length;
        if (batchBytes >= writeBatchBytes) await flush();
      }
      if (batchBytes > 0) await flush();
      await inflight;
      running.size = position;
      return received;
    } catch (err) {
      await inflight.catch(() => {});
      await fh.truncate(offset).catch(() => {});
      this.hashes.delete(id);
      throw err;
    } finally {
      await fh.close();
    }
  }

  /**
   * Verifies the staged bytes against `digest` and returns the finished file for ingesting.
   * On a mismatch the upload is discarded (nothing is stored) and DIGEST_INVALID thrown.
   */
  async finish(repository: string, id: string, digest: Digest): Promise<{ file: string; size: number }> {
    await this.info(repository, id);
    const size = await this.stagedSize(id);
    const running = await this.runningHash(id, digest.algorithm, size);
    const actual = running.hash.copy().digest("hex");
    if (actual !== digest.hex) {
      await this.remove(id);
      throw new TabbifyError(
        "DIGEST_INVALID",
        `uploaded content has digest ${digest.algorithm}:${actual}, not the ${digest.algorithm}:${digest.hex} given`,
        { digest: `${digest.algorithm}:${digest.hex}` },
      );
    }
    return { file: this.dataFile(id), size };
  }

  /** Forgets an upload and deletes what it staged. */
  async remove(id: string): Promise<void> {
    this.hashes.delete(id);
    this.infos.delete(id);
    await rm(this.dir(id), { recursive: true, force: true });
    this.untrack(id);
  }

  async cancel(repository: string, id: string): Promise<void> {
    await this.info(repository, id);
    await this.stagedSize(id);
    await this.remove(id);
  }

  /**
   * Removes sessions untouched for longer than the stale age (crashed or abandoned clients) and
   * returns how many; with `dryRun`, only counts them.
   */
  async cleanupStale(now = Date.now(), opts: { dryRun?: boolean } = {}): Promise<number> {
    let entries: string[];
    try {
      entries = await readdir(this.stagingDir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return 0;
      throw err;
    }
    let removed = 0;
    for (const id of entries) {
      if (this.busy.has(id)) continue;
      const touched = await stat(this.dataFile(id))
        .then((s) => s.mtimeMs)
        .catch(() =>
          stat(this.dir(id)).then(
            (s) => s.mtimeMs,
            () => 0,
          ),
        );
      if (now - touched > this.staleAfterMs) {
        if (!opts.dryRun) await this.remove(id);
        removed++;
      }
    }
    return removed;
  }
}
