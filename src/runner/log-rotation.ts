import { createWriteStream } from "node:fs";
import { type FileHandle, open, rename, rm, stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { isErrno } from "../core/errors.js";
import type { Logger } from "../core/log.js";

/**
 * Size-based rotation of runner logs (`<data>/runners/<uuid>.log`), keeping one older generation
 * in `<path>.1`. Which way depends on who holds the file open:
 * - nobody (the supervisor, just before it spawns a runner): `rotateByRename`;
 * - live processes (a runner and its workloads append through inherited O_APPEND fds, which a
 *   rename would leave writing into `.1` forever): copy-truncate, driven by `watchLogSize`.
 * A missing log is never an error: there is nothing to rotate.
 */

/** The size past which a runner log is rotated, at spawn and while the runner runs. */
export const logRotateBytes = 8 * 1024 * 1024;

/** Where the previous generation of the log at `path` lives. */
export function rotatedPath(path: string): string {
  return `${path}.1`;
}

/**
 * Renames the log over `.1` when it is larger than `maxBytes`; returns whether it did. Only for a
 * log no process has open. Errors other than a missing log are thrown.
 */
export async function rotateByRename(path: string, maxBytes: number): Promise<boolean> {
  try {
    if ((await stat(path)).size <= maxBytes) return false;
    await rename(path, rotatedPath(path));
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/**
 * Copies the log to `.1` and truncates it when it is larger than `maxBytes`. Returns the bytes
 * moved to `.1`, or undefined when there was nothing to do. The log is truncated only once `.1`
 * holds the copy, so a failure loses nothing. One handle serves the size check, the copy and the
 * truncate, so they all concern the same file even if the path is renamed meanwhile.
 */
async function copyTruncate(path: string, maxBytes: number): Promise<number | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r+");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  try {
    if ((await fh.stat()).size <= maxBytes) return undefined;
    const target = rotatedPath(path);
    // `.1` is replaced by a rename, so a reader never sees it half written.
    const tmp = `${target}.tmp-${process.pid}`;
    const out = createWriteStream(tmp, { mode: 0o600 });
    try {
      // Streamed, never read whole; reads up to the end of file as it is while copying, so lines
      // the writers append during the copy are kept too.
      await pipeline(fh.createReadStream({ start: 0, autoClose: false }), out);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    // Lines appended between the copy's last read and this truncate end up in neither file: the
    // accepted cost of copy-truncate, the only rotation that works under live writers. Every
    // writer uses O_APPEND, so their next write lands at the new end (offset 0), not past a hole.
    await fh.truncate(0);
    return out.bytesWritten;
  } finally {
    await fh.close();
  }
}

export interface LogSizeWatchOptions {
  /** The log live processes append to. */
  path: string;
  /** Rotate once the log is larger than this. */
  maxBytes: number;
  /** How often the size is checked. */
  intervalMs: number;
  logger: Logger;
}

export interface LogSizeWatch {
  /** Stops the periodic checks; a check already running completes. */
  stop(): void;
  /**
   * One check now; resolves to whether it rotated, never rejects (failures are logged). While a
   * check is running, callers get that check's result rather than starting a second one.
   */
  check(): Promise<boolean>;
}

/**
 * Keeps the log at `path` near `maxBytes` by copy-truncate (see `copyTruncate`), checking every
 * `intervalMs`. The timer is unref'd: it never keeps a process alive. A rotation logs one info
 * line (sizes only); a failure logs a warning once per distinct message, so a persistent problem
 * does not itself flood the log.
 */
export function watchLogSize(opts: LogSizeWatchOptions): LogSizeWatch {
  const { path, maxBytes, intervalMs, logger } = opts;
  if (!Number.isFinite(maxBytes) || maxBytes < 0)
    throw new RangeError(`maxBytes must be >= 0, got ${maxBytes}`);
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new RangeError(`intervalMs must be > 0, got ${intervalMs}`);
  }
  const warned = new Set<string>();
  let running: Promise<boolean> | undefined;

  const rotate = async (): Promise<boolean> => {
    try {
      const bytes = await copyTruncate(path, maxBytes);
      if (bytes === undefined) return false;
      logger.info("log rotated", { rotatedBytes: bytes, maxBytes });
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!warned.has(message)) {
        warned.add(message);
        logger.warn("log rotation failed", { error: message });
      }
      return false;
    }
  };

  const check = (): Promise<boolean> => {
    if (running) return running;
    const current = rotate().finally(() => {
      if (running === current) running = undefined;
    });
    running = current;
    return current;
  };

  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    check,
  };
}
