import { type FileHandle, open } from "node:fs/promises";
import { PassThrough, type Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isErrno } from "../core/errors.js";
import { rotatedPath } from "../runner/log-rotation.js";
import { splitStamp } from "../runner/log-stamp.js";

/**
 * Reading a runner log for `GET /v1/apps/:uuid/logs`: the last N lines of the rotated `.1` and
 * the live log (read backwards in chunks, never whole), or every line since a time (streamed
 * forward), then optionally following the live log. Lines carry the runner's stamps
 * (log-stamp.ts), which `since` filters on and which are dropped unless asked for.
 * Rotation is copy-truncate (log-rotation.ts), so a follower that sees the file shrink starts
 * again from its beginning.
 */

const CHUNK = 64 * 1024;
/** A tail never reads more than this much of one file, however long its lines. */
const TAIL_MAX_BYTES = 4 * 1024 * 1024;
const FOLLOW_POLL_MS = 200;
/** Lines a view without `tail` or `since` shows. */
const LOG_TAIL_FALLBACK = 100;

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

export interface LogView {
  /** The last `tail` lines; undefined with `since`: every line since then. Default 100. */
  tail: number | undefined;
  follow: boolean;
  /** Only lines stamped at or after this (ms since the epoch). */
  since?: number | undefined;
  /** Keep each line's stamp (log-stamp.ts); without it lines read as the app wrote them. */
  timestamps?: boolean;
  signal: AbortSignal;
}

/**
 * Whole lines in, the lines the view wants out: those stamped at or after `since` (a bare line
 * goes with the stamped line before it; bare lines before any stamp count as older), stamps kept
 * or dropped. Partial lines wait for their end.
 */
function lineFilter(view: Pick<LogView, "since" | "timestamps">): Transform {
  let partial = "";
  let lastAt: number | undefined;
  const decoder = new TextDecoder();
  const pick = (lines: string[]): string => {
    let out = "";
    for (const line of lines) {
      const { at, text } = splitStamp(line);
      if (at !== undefined) lastAt = at;
      if (view.since !== undefined && (lastAt === undefined || lastAt < view.since)) continue;
      out += `${view.timestamps ? line : text}\n`;
    }
    return out;
  };
  return new Transform({
    transform(chunk: Buffer | string, _enc, done) {
      partial += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      const out = pick(lines);
      done(null, out === "" ? undefined : out);
    },
    flush(done) {
      partial += decoder.decode();
      const out = partial === "" ? "" : pick([partial]);
      done(null, out === "" ? undefined : out);
    },
  });
}

/** Streams `path` from its start up to `end` bytes into `out` (not ending it); nothing if absent. */
async function copyFileInto(path: string, end: number, out: Writable): Promise<void> {
  if (end <= 0) return;
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  try {
    await pipeline(fh.createReadStream({ start: 0, end: end - 1, autoClose: false }), out, { end: false });
  } finally {
    await fh.close();
  }
}

/**
 * A text stream of the log: the last `tail` lines (or, with `since` and no tail, every line since
 * then, read forward through `.1` and the live file), then (with `follow`) whatever is appended,
 * until `signal` aborts. Each poll reads only the new bytes; nothing is read whole.
 */
export async function logStream(path: string, view: LogView): Promise<Readable> {
  const filter = lineFilter(view);
  const out = new PassThrough();
  filter.pipe(out);
  filter.on("error", (err) => {
    if (!view.signal.aborted) out.destroy(err);
  });
  let pos = (await sizeOf(path)) ?? 0;
  const fromSince = view.tail === undefined && view.since !== undefined;
  const lines = fromSince ? [] : await tailLog(path, view.tail ?? LOG_TAIL_FALLBACK);
  if (lines.length > 0) filter.write(`${lines.join("\n")}\n`);
  // Read while the caller consumes `out` (backpressure): it is returned before this finishes.
  const history = fromSince
    ? (async () => {
        const older = rotatedPath(path);
        await copyFileInto(older, (await sizeOf(older)) ?? 0, filter);
        await copyFileInto(path, pos, filter);
      })()
    : Promise.resolve();
  // A caller that hangs up mid-history stops the reading (its file handle closes with it).
  const hangUp = () => {
    filter.destroy();
    out.destroy();
  };
  view.signal.addEventListener("abort", hangUp, { once: true });
  out.on("close", () => view.signal.removeEventListener("abort", hangUp));
  const failed = (err: Error) => {
    if (!view.signal.aborted) out.destroy(err);
  };
  if (!view.follow) {
    history.then(() => filter.end(), failed);
    return out;
  }
  let busy = false;
  const poll = async () => {
    if (busy || filter.destroyed) return;
    busy = true;
    try {
      const size = await sizeOf(path);
      if (size === undefined) return;
      if (size < pos) pos = 0;
      if (size === pos) return;
      const fh = await open(path, "r");
      try {
        while (pos < size && !filter.destroyed) {
          const len = Math.min(CHUNK, size - pos);
          const buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          if (!filter.write(buf.subarray(0, bytesRead))) await new Promise((r) => filter.once("drain", r));
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
  let timer: NodeJS.Timeout | undefined;
  history.then(() => {
    if (!view.signal.aborted && !out.destroyed) timer = setInterval(() => void poll(), FOLLOW_POLL_MS);
  }, failed);
  out.on("close", () => clearInterval(timer));
  return out;
}
