import { Writable } from "node:stream";

/**
 * Every line of a runner log starts with the time the runner received it: `<ISO-8601 UTC> <line>`,
 * e.g. `2026-12-06T06:05:07.123Z listening on :8080`. The runner writes its workload's stdout and
 * stderr (and its own log lines) through `stampLines`, one line at a time, as they arrive; readers
 * (`tcli logs --since`, log tails in error bodies) use `splitStamp`. A line without a stamp (a
 * crash trace written straight to the fd) belongs to the stamped line before it.
 */

const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /;
/** Longest unterminated line held back; past it, what arrived so far is written as a line. */
const MAX_PENDING = 64 * 1024;

/** The stamp (ms since the epoch) and the line without it; `at` is undefined for a bare line. */
export function splitStamp(line: string): { at: number | undefined; text: string } {
  const m = STAMP.exec(line);
  if (!m) return { at: undefined, text: line };
  return { at: Date.parse(m[1]!), text: line.slice(m[0].length) };
}

/** Lines of text with their stamps removed (for error bodies that quote a log's tail). */
export function unstamped(text: string): string {
  return text
    .split("\n")
    .map((l) => splitStamp(l).text)
    .join("\n");
}

/**
 * A writable that stamps each complete line and hands it to `write` (sync, e.g. a file fd's
 * stream). A line is stamped with the time its first byte arrived. `end()` writes a last,
 * unterminated line too.
 */
export function stampLines(write: (text: string) => void, now: () => Date = () => new Date()): Writable {
  let pending = "";
  let pendingAt: string | undefined;
  const decoder = new TextDecoder();
  const take = (text: string) => {
    let out = "";
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      out += `${pendingAt ?? now().toISOString()} ${pending}${text.slice(start, nl)}\n`;
      pending = "";
      pendingAt = undefined;
      start = nl + 1;
    }
    const rest = text.slice(start);
    if (rest !== "") {
      pendingAt ??= now().toISOString();
      pending += rest;
      if (pending.length > MAX_PENDING) {
        out += `${pendingAt} ${pending}\n`;
        pending = "";
        pendingAt = undefined;
      }
    }
    if (out !== "") write(out);
  };
  return new Writable({
    decodeStrings: false,
    write(chunk: Buffer | string, _enc, done) {
      take(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }));
      done();
    },
    final(done) {
      take(decoder.decode());
      if (pending !== "") write(`${pendingAt} ${pending}\n`);
      pending = "";
      done();
    },
  });
}
