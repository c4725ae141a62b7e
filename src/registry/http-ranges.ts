import type { FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { ByteRange } from "../storage/driver.js";

/** The byte positions of the /v2 edge: upload chunks (`Content-Range`) and blob reads (`Range`). */

/** `Range: 0-<last byte>` as distribution sends it; an empty upload reads `0-0`. */
export function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

export function contentLength(request: FastifyRequest): number | undefined {
  const raw = request.headers["content-length"];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new TabbifyError("SIZE_INVALID", "invalid Content-Length");
  return n;
}

/** A chunk's declared position: `Content-Range: <start>-<end>` (OCI form; `bytes ` tolerated). */
export function chunkOptions(request: FastifyRequest): { start?: number; end?: number; length?: number } {
  const out: { start?: number; end?: number; length?: number } = {};
  const length = contentLength(request);
  if (length !== undefined) out.length = length;
  const raw = request.headers["content-range"];
  if (raw !== undefined) {
    const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(raw.trim());
    if (!m)
      throw new TabbifyError(
        "RANGE_INVALID",
        `invalid Content-Range "${raw.slice(0, 100)}": want <start>-<end>`,
      );
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (end < start)
      throw new TabbifyError("RANGE_INVALID", `Content-Range end ${end} is before its start ${start}`);
    out.start = start;
    out.end = end;
  }
  return out;
}

/**
 * A blob GET's `Range`. One `bytes=` range is served (206); a syntactically odd header or a
 * multi-range is ignored (200, the whole blob), as RFC 9110 allows; a range that starts past the
 * end is RANGE_INVALID (416).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw rangeInvalid(header, size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) throw rangeInvalid(header, size);
  return { start, end };
}

function rangeInvalid(header: string, size: number): TabbifyError {
  return new TabbifyError(
    "RANGE_INVALID",
    `range "${header.slice(0, 100)}" is outside the blob's ${size} bytes`,
    {
      blobSize: size,
    },
  );
}
