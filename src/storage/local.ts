import { randomBytes } from "node:crypto";
import {
  chmod,
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { ByteRange, ExclusiveCreateScope, FileInfo, StorageDriver } from "./driver.js";

/** The staging directory under the root; never a valid first path component for data. */
const STAGING = "_tmp";

/** Modes of everything the driver creates: the store is readable by its owner alone. */
export const privateDirMode = 0o700;
export const privateFileMode = 0o600;

/**
 * Files under one root directory. Atomicity comes from rename(2)/link(2) within one
 * filesystem: everything is first written under `<root>/_tmp/`, which is also where callers
 * should stage files they will `ingest`, so the final rename never crosses a device.
 *
 * Directories are created 0700 and files 0600 (whatever the umask allows of that): another
 * local user reads no tenant's blobs; an ingested file is set to 0600 whatever it was staged as.
 */
export class LocalDriver implements StorageDriver {
  readonly name = "local";
  readonly root: string;
  readonly tmpDir: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.tmpDir = join(this.root, STAGING);
  }

  /** The file a path names; "" is the root itself, allowed only where `allowRoot` says so. */
  private full(path: string, allowRoot = false): string {
    if (path === "" && allowRoot) return this.root;
    const parts = path.split("/");
    if (
      path.startsWith("/") ||
      parts.some((p) => p === "" || p === "." || p === "..") ||
      path.includes("\0")
    ) {
      throw new TabbifyError("PATH_INVALID", `invalid storage path: ${JSON.stringify(path)}`);
    }
    if (parts[0] === STAGING) {
      throw new TabbifyError("PATH_INVALID", `storage path inside the staging area: ${JSON.stringify(path)}`);
    }
    return join(this.root, ...parts);
  }

  private async tmpFile(): Promise<string> {
    await mkdir(this.tmpDir, { recursive: true, mode: privateDirMode });
    return join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString("hex")}`);
  }

  /**
   * Moves `from` to `dest`, creating dest's parents. A concurrent `delete` may prune a parent
   * between the mkdir and the rename (ENOENT), so the pair is retried.
   */
  private async publish(
    from: string,
    dest: string,
    op: (a: string, b: string) => Promise<void>,
  ): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await mkdir(dirname(dest), { recursive: true, mode: privateDirMode });
      try {
        await op(from, dest);
        return;
      } catch (err) {
        if (!isErrno(err, "ENOENT") || attempt >= 5) throw err;
        // ENOENT for the source is a real error; for the destination's parent, retry.
        await stat(from);
      }
    }
  }

  async stat(path: string): Promise<FileInfo | null> {
    try {
      const s = await stat(this.full(path));
      return s.isFile() ? { size: s.size, modified: s.mtime } : null;
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return null;
      throw err;
    }
  }

  async read(path: string, range?: ByteRange): Promise<Readable> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.full(path), "r");
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR") || isErrno(err, "EISDIR")) {
        throw new TabbifyError("PATH_NOT_FOUND", `no such file: ${path}`);
      }
      throw err;
    }
    let info: Awaited<ReturnType<typeof handle.stat>>;
    try {
      // open(2) succeeds on a directory; only reading it fails, so check before streaming.
      info = await handle.stat();
      if (!info.isFile()) throw new TabbifyError("PATH_NOT_FOUND", `no such file: ${path}`);
      if (range && (range.start < 0 || range.end < range.start || range.start >= info.size)) {
        throw new TabbifyError(
          "RANGE_INVALID",
          `byte range ${range.start}-${range.end} does not fit ${path} (${info.size} bytes)`,
        );
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? info.size - 1, info.size - 1);
    return new FileRangeStream(handle, start, end);
  }

  async getContent(path: string): Promise<Buffer | null> {
    try {
      return await readFile(this.full(path));
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR") || isErrno(err, "EISDIR")) return null;
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const dest = this.full(path);
    const tmp = await this.tmpFile();
    try {
      await writeFile(tmp, content, { mode: privateFileMode });
      await this.publish(tmp, dest, rename);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean> {
    const dest = this.full(path);
    const tmp = await this.tmpFile();
    try {
      await writeFile(tmp, content, { mode: privateFileMode });
      // link(2) fails with EEXIST when dest exists, and publishes the complete file otherwise.
      await this.publish(tmp, dest, link);
      return true;
    } catch (err) {
      if (isErrno(err, "EEXIST")) return false;
      throw err;
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  async exclusiveCreateScope(): Promise<ExclusiveCreateScope> {
    return "store";
  }

  async ingest(path: string, localFile: string, size: number): Promise<void> {
    const dest = this.full(path);
    const actual = (await stat(localFile)).size;
    if (actual !== size) {
      throw new TabbifyError(
        "SIZE_MISMATCH",
        `ingest of ${path}: file has ${actual} bytes, expected ${size}`,
      );
    }
    // The staged file may carry its origin's mode (a copy of a user's 0644 file): the store's
    // files are 0600 whatever they were staged as.
    await chmod(localFile, privateFileMode);
    try {
      await this.publish(localFile, dest, rename);
    } catch (err) {
      if (!isErrno(err, "EXDEV")) throw err;
      // Staged on another filesystem: copy into our staging area first, so the final step is
      // still a rename and readers never see a partial copy.
      const tmp = await this.tmpFile();
      try {
        await copyFile(localFile, tmp);
        await chmod(tmp, privateFileMode);
        await this.publish(tmp, dest, rename);
      } catch (copyErr) {
        await unlink(tmp).catch(() => {});
        throw copyErr;
      }
      await unlink(localFile);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      const entries = await readdir(this.full(path, true));
      return (path === "" ? entries.filter((e) => e !== STAGING) : entries).sort();
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return [];
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    const full = this.full(path);
    await rm(full, { recursive: true, force: true });
    // S3 has no directories: once a directory's last child is gone, it is gone too. Prune empty
    // parents up to (not including) the root; a parent someone just wrote into is not empty.
    let dir = dirname(full);
    while (dir !== this.root && dir.startsWith(this.root)) {
      try {
        await rmdir(dir);
      } catch (err) {
        if (isErrno(err, "ENOTEMPTY") || isErrno(err, "EEXIST") || isErrno(err, "ENOENT")) break;
        throw err;
      }
      dir = dirname(dir);
    }
  }
}

const readBlockBytes = 1024 * 1024;
/** Spare read buffers a stream keeps for reuse: enough for its read-ahead plus one in flight. */
const maxSpareBuffers = 4;

/**
 * A file's byte range as a stream of 1 MiB reads (4 MiB blocks measured no faster). A consumer
 * that is done with a chunk (written to a socket, say) may hand it back with `recycle`, and the
 * next read fills that memory again:
 * each fresh block buffer is external memory to V8, and allocating one per read makes it run a
 * full mark-compact every few dozen MiB served. Consumers that never recycle just get fresh
 * buffers, as from `fs.createReadStream`.
 *
 * At most one block is buffered (the next is read while the consumer writes this one), so every
 * chunk a consumer gets is a block this stream read: `read()` without a size, which `for await`
 * calls, returns all that is buffered as one `Buffer.concat` copy, which `recycle` cannot take
 * back. Measured on bench:registry's 256 MiB pull, behind a socket slower than the disk: with
 * two blocks buffered 10–50% of the chunks were such copies and serving took 1.4–1.8 s of CPU
 * per GiB; with one, 0.7 s, as docker-registry takes.
 */
export class FileRangeStream extends Readable {
  private position: number;
  private readonly spare: Buffer[] = [];

  constructor(
    private readonly handle: Awaited<ReturnType<typeof open>>,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: readBlockBytes });
    this.position = start;
  }

  /** Gives back a chunk this stream produced; its memory is reused for a later read. */
  recycle(chunk: Buffer): void {
    if (this.spare.length >= maxSpareBuffers || chunk.buffer.byteLength !== readBlockBytes) return;
    this.spare.push(Buffer.from(chunk.buffer, 0, readBlockBytes));
  }

  override _read(): void {
    const want = Math.min(readBlockBytes, this.end - this.position + 1);
    if (want <= 0) {
      this.push(null);
      return;
    }
    // The tail of a file, or a small file (a config, a manifest), gets a buffer of its own size:
    // only whole blocks are worth keeping for reuse.
    const buffer =
      want < readBlockBytes
        ? Buffer.allocUnsafe(want)
        : (this.spare.pop() ?? Buffer.allocUnsafeSlow(readBlockBytes));
    this.handle.read(buffer, 0, want, this.position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.push(null);
          return;
        }
        this.position += bytesRead;
        this.push(buffer.subarray(0, bytesRead));
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.handle.close().then(
      () => callback(err),
      (closeErr: unknown) => callback(err ?? (closeErr as Error)),
    );
  }
}
