import { type FileHandle, open } from "node:fs/promises";
import { PassThrough } from "node:stream";
import { isErrno } from "../core/errors.js";
import { rotatedPath } from "../runner/log-rotation.js";

/**
 * Reading a runner log for `GET /v1/apps/:uuid/logs`: the last N lines of the rotated `.1` and
 * the live log (read backwards in chunks, never whole), then optionally following the live log.
 * Rotation is copy-truncate (log-rotation.ts), so a follower that sees the file shrink starts
 * again from its beginning.
 */

const CHUNK = 64 * 1024;
/** A tail never reads more than this much of one file, however long its lines. */
const TAIL_MAX_BYTES = 4 * 1024 * 1024;
const FOLLOW_POLL_MS = 200;

/** The last `n` complete lines of `path` (fewer if it has fewer); [] when it does not exist. */
export async function tailLines(path: string, n: number): Promise<string[]> {
  if (n <= 0) return [];
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    let pos = size;
    let text = "";
    while (pos > 0 && size - pos < TAIL_MAX_BYTES) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, pos);
      text = buf.toString("utf8") + text;
      if (text.split("\n").length > n + 1) break;
    }
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    // The first piece may be a partial line cut by the chunking.
    if (pos > 0) lines.shift();
    return lines.slice(-n);
  } finally {
    await fh.close();
  }
}

/** The last `n` lines across `<path>.1` then `<path>`. */
export async function tailLog(path: string, n: number): Promise<string[]> {
  const live = await tailLines(path, n);
  const older = live.length < n ? await tailLines(rotatedPath(path), n - live.length) : [];
  return [...older, ...live];
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const fh = await open(path, "r");
    try {
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

/**
 * A text stream: the last `tail` lines, then (with `follow`) whatever is appended, until
 * `signal` aborts. Each poll reads only the new bytes.
 */
export async function logStream(
  path: string,
  opts: { tail: number; follow: boolean; signal: AbortSignal },
): Promise<PassThrough> {
  const out = new PassThrough();
  const lines = await tailLog(path, opts.tail);
  let pos = (await sizeOf(path)) ?? 0;
  if (lines.length > 0) out.write(`${lines.join("\n")}\n`);
  if (!opts.follow) {
    out.end();
    return out;
  }
  let busy = false;
  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      const size = await sizeOf(path);
      if (size === undefined) return;
      if (size < pos) pos = 0;
      if (size === pos) return;
      const fh = await open(path, "r");
      try {
        while (pos < size) {
          const len = Math.min(CHUNK, size - pos);
          const buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          if (!out.write(buf.subarray(0, bytesRead))) await new Promise((r) => out.once("drain", r));
        }
      } finally {
        await fh.close();
      }
    } catch (err) {
      out.destroy(err as Error);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void poll(), FOLLOW_POLL_MS);
  const stop = () => {
    clearInterval(timer);
    out.end();
  };
  opts.signal.addEventListener("abort", stop, { once: true });
  out.on("close", () => clearInterval(timer));
  return out;
}
