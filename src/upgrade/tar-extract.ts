/**
 * Unpacks an `npm pack` tarball (gzip'd ustar, every path under `package/`) into a directory,
 * refusing anything a release has no business carrying: links of either kind, devices, FIFOs,
 * absolute paths, `..` segments, paths outside `package/`, and a file written twice. Since no link
 * is ever created, no later entry can be steered outside the target through one. Streams: the
 * tarball is never held in memory whole.
 */
import { createReadStream } from "node:fs";
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createGunzip } from "node:zlib";
import { TabbifyError } from "../core/errors.js";

export interface ExtractLimits {
  /** Sum of the entries' sizes. Default 1 GiB. */
  maxBytes?: number;
  /** Default 100 000. */
  maxEntries?: number;
}

const BLOCK = 512;

function unsafe(message: string): TabbifyError {
  return new TabbifyError("RELEASE_UNSAFE", message);
}

/** `package/a/b` → `a/b`; throws on anything that could leave the target or is not plain. */
export function releaseRelativePath(raw: string): string {
  if (raw.includes("\0") || raw.includes("\\")) throw unsafe(`entry ${JSON.stringify(raw)}: bad characters`);
  if (raw.startsWith("/")) throw unsafe(`entry ${JSON.stringify(raw)}: absolute path`);
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw unsafe(`entry ${JSON.stringify(raw)}: ".." escapes the release directory`);
  if (parts[0] !== "package") throw unsafe(`entry ${JSON.stringify(raw)}: not under package/`);
  return parts.slice(1).join("/");
}

function field(header: Buffer, offset: number, length: number): string {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString("utf8");
}

function octal(header: Buffer, offset: number, length: number): number {
  const text = field(header, offset, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw unsafe(`a header field is not octal: ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return sum === octal(header, 148, 8);
}

/** The `path` record of a pax extended header, if any. */
function paxPath(body: Buffer): string | undefined {
  let at = 0;
  let path: string | undefined;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number.parseInt(body.subarray(at, space).toString("ascii"), 10);
    if (!Number.isFinite(length) || length <= 0) throw unsafe("a pax header record is malformed");
    const record = body.subarray(space + 1, at + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (record.slice(0, eq) === "path") path = record.slice(eq + 1);
    at += length;
  }
  return path;
}

/** A byte source that hands out exact-length pieces of the decompressed stream. */
class Blocks {
  #buffered: Buffer[] = [];
  #size = 0;
  readonly #iterator: AsyncIterator<Buffer>;
  #done = false;

  constructor(stream: AsyncIterable<Buffer>) {
    this.#iterator = stream[Symbol.asyncIterator]();
  }

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async take(n: number): Promise<Buffer> {
    while (this.#size < n && !this.#done) {
      const next = await this.#iterator.next();
      if (next.done) this.#done = true;
      else {
        this.#buffered.push(next.value);
        this.#size += next.value.length;
      }
    }
    const first = this.#buffered[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#buffered.shift();
      else this.#buffered[0] = first.subarray(n);
      this.#size -= n;
      return out;
    }
    const all = Buffer.concat(this.#buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.#buffered = rest.length > 0 ? [rest] : [];
    this.#size = rest.length;
    return out;
  }
}

/** Extracts `tarball` into `target` (an existing, empty directory). */
export async function extractRelease(
  tarball: string,
  target: string,
  limits: ExtractLimits = {},
): Promise<void> {
  const maxBytes = limits.maxBytes ?? 1024 ** 3;
  const maxEntries = limits.maxEntries ?? 100_000;
  const gunzip = createReadStream(tarball).pipe(createGunzip());
  const blocks = new Blocks(gunzip);
  const written = new Set<string>();
  let total = 0;
  let entries = 0;
  let nextPath: string | undefined;
  try {
    for (;;) {
      const header = await blocks.take(BLOCK);
      if (header.length < BLOCK) throw unsafe("the tarball ends inside a header");
      if (header.every((b) => b === 0)) return;
      if (!checksumOk(header)) throw unsafe("a tar header's checksum does not match");
      if (++entries > maxEntries) throw unsafe(`more than ${maxEntries} entries`);
      const type = String.fromCharCode(header[156]!);
      const size = octal(header, 124, 12);
      total += size;
      if (total > maxBytes) throw unsafe(`more than ${maxBytes} bytes unpacked`);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const prefix = field(header, 345, 155);
      const name = nextPath ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
      if (type === "x" || type === "g") {
        const body = await blocks.take(padded);
        if (type === "x") nextPath = paxPath(body.subarray(0, size));
        continue;
      }
      nextPath = undefined;
      if (type !== "0" && type !== "\0" && type !== "5") {
        const kind =
          type === "2" ? "a symlink" : type === "1" ? "a hard link" : `type ${JSON.stringify(type)}`;
        throw unsafe(`entry ${JSON.stringify(name)} is ${kind}; a release holds only files and directories`);
      }
      const relative = releaseRelativePath(name);
      if (type === "5" || relative === "") {
        if (relative !== "") await mkdir(join(target, relative), { recursive: true, mode: 0o755 });
        await blocks.take(padded);
        continue;
      }
      if (written.has(relative)) throw unsafe(`entry ${JSON.stringify(name)} appears twice`);
      written.add(relative);
      const mode = octal(header, 100, 8) & 0o111 ? 0o755 : 0o644;
      await writeEntry(blocks, join(target, relative), size, padded, mode);
    }
  } finally {
    gunzip.destroy();
  }
}

async function writeEntry(
  blocks: Blocks,
  path: string,
  size: number,
  padded: number,
  mode: number,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // O_EXCL: never through an existing file or link.
  let file: FileHandle | undefined = await open(path, "wx", mode);
  try {
    let left = size;
    while (left > 0) {
      const piece = await blocks.take(Math.min(left, 1 << 20));
      if (piece.length === 0) throw unsafe("the tarball ends inside a file");
      await file.write(piece);
      left -= piece.length;
    }
    await file.close();
    file = undefined;
    await blocks.take(padded - size);
  } finally {
    await file?.close();
  }
}
