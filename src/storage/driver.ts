import type { Readable } from "node:stream";

/**
 * The storage driver: the one small interface between services that keep content (the
 * registry, the artifact store) and where bytes live (a local directory, an S3 bucket).
 *
 * Paths are `/`-separated, relative, without a leading slash (`blobs/sha256/ab/abcd…/data`).
 * Drivers hold no policy: layout, naming and validation belong to the services above.
 *
 * Invariants every driver keeps (checked by the shared suite in driver-suite.ts):
 * - a reader never sees a half-written file: `putContent` and `ingest` publish atomically;
 * - `read` streams; nothing is buffered whole;
 * - absent paths are `null`/`[]`/no-ops, never exceptions, except `read`, which throws
 *   `TabbifyError("PATH_NOT_FOUND")`;
 * - `list` shows only what was written: no staging areas, no empty directories left behind by
 *   `delete` (S3 has no directories, so the local driver prunes them);
 * - a path is one or more non-empty components, none `.` or `..` (`list("")` names the root):
 *   anything else is `TabbifyError("PATH_INVALID")`.
 */
export interface StorageDriver {
  readonly name: string;
  /** Size and modification time of a file, or null when absent (directories are absent). */
  stat(path: string): Promise<FileInfo | null>;
  /**
   * Streams a file, or the inclusive byte range of it; an `end` past the file's last byte is
   * clamped. Throws PATH_NOT_FOUND, and RANGE_INVALID when `start` is past the end or after `end`.
   */
  read(path: string, range?: ByteRange): Promise<Readable>;
  /** Reads a small file whole (metadata, links). Null when absent. */
  getContent(path: string): Promise<Buffer | null>;
  /** Writes a small file atomically, replacing what was there. */
  putContent(path: string, content: Buffer | string): Promise<void>;
  /**
   * Creates a small file only if nothing is at `path`; returns false (and writes nothing) when
   * something already is. Two racing callers: exactly one gets true, within the scope that
   * `exclusiveCreateScope` reports.
   */
  putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean>;
  /**
   * How far `putContentIfAbsent`'s exclusivity reaches: "store" when it holds between every
   * process sharing the store (link(2), S3 conditional writes), "instance" when only between
   * callers of this driver object (an S3-compatible server that ignores `If-None-Match`).
   */
  exclusiveCreateScope(): Promise<ExclusiveCreateScope>;
  /**
   * Publishes a finished local file at `path` atomically (a rename on the local driver, a
   * multipart upload on S3). The local file is consumed: removed once published. `size` must be
   * the file's size (SIZE_MISMATCH otherwise): it guards against publishing a truncated file.
   */
  ingest(path: string, localFile: string, size: number): Promise<void>;
  /** Names of the immediate children of a directory-like path, sorted; [] when absent. */
  list(path: string): Promise<string[]>;
  /** Deletes a file or a whole subtree. No error when absent. */
  delete(path: string): Promise<void>;
}

export type ExclusiveCreateScope = "store" | "instance";

export interface FileInfo {
  size: number;
  modified: Date;
}

/** Inclusive byte range, as HTTP `Range: bytes=start-end` means it. */
export interface ByteRange {
  start: number;
  end: number;
}
