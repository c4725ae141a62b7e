import { randomBytes } from "node:crypto";
import {
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { ByteRange, FileInfo, StorageDriver } from "./driver.js";

/**
 * Files under one root directory. Atomicity comes from rename(2)/link(2) within one
 * filesystem: everything is first written under `<root>/_tmp/`, which is also where callers
 * should stage files they will `ingest`, so the final rename never crosses a device.
 */
export class LocalDriver implements StorageDriver {
  readonly name = "local";
  readonly root: string;
  readonly tmpDir: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.tmpDir = join(this.root, "_tmp");
  }

  private full(path: string): string {
    const full = resolve(this.root, path);
    if (path.startsWith("/") || (full !== this.root && !full.startsWith(this.root + sep))) {
      throw new Error(`storage path escapes the root: ${path}`);
    }
    return full;
  }

  private async tmpFile(): Promise<string> {
    await mkdir(this.tmpDir, { recursive: true });
    return join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString("hex")}`);
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
    return handle.createReadStream({
      start: range?.start,
      end: range?.end,
      highWaterMark: 1024 * 1024,
      autoClose: true,
    });
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
    await writeFile(tmp, content);
    await mkdir(dirname(dest), { recursive: true });
    await rename(tmp, dest);
  }

  async putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean> {
    const dest = this.full(path);
    const tmp = await this.tmpFile();
    await writeFile(tmp, content);
    await mkdir(dirname(dest), { recursive: true });
    try {
      // link(2) fails with EEXIST when dest exists, and publishes the complete file otherwise.
      await link(tmp, dest);
      return true;
    } catch (err) {
      if (isErrno(err, "EEXIST")) return false;
      throw err;
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  async ingest(path: string, localFile: string, _size: number): Promise<void> {
    const dest = this.full(path);
    await mkdir(dirname(dest), { recursive: true });
    try {
      await rename(localFile, dest);
    } catch (err) {
      if (!isErrno(err, "EXDEV")) throw err;
      const tmp = await this.tmpFile();
      await copyFile(localFile, tmp);
      await rename(tmp, dest);
      await unlink(localFile);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      const entries = await readdir(this.full(path));
      return entries.sort();
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return [];
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    await rm(this.full(path), { recursive: true, force: true });
  }
}
