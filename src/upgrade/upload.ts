/**
 * Release tarballs sent over HTTP (to the node, and by `tabbify up` to a supervisor on another
 * host): streamed to a 0600 file, never held in memory, bounded in size.
 */
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";

/** A Tabbify release is a few MB; this leaves room and bounds the disk an upload can take. */
export const RELEASE_TARBALL_LIMIT = 512 * 1024 * 1024;

/** In `scope`, an octet-stream (or gzip) body reaches the handler as the request stream. */
export function acceptTarballBodies(scope: FastifyInstance): void {
  scope.addContentTypeParser(
    ["application/octet-stream", "application/gzip"],
    { bodyLimit: RELEASE_TARBALL_LIMIT },
    (_req, payload, done) => done(null, payload),
  );
}

/** Writes the streamed body to `<dir>/<name>.tgz` (a new file, 0600); its path. */
export async function saveTarball(body: unknown, dir: string, name: string): Promise<string> {
  if (!body || typeof (body as Readable).pipe !== "function") {
    throw new TabbifyError("BAD_REQUEST", "send the release tarball as application/octet-stream");
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tarball = join(dir, `${name}.tgz`);
  try {
    await pipeline(body as Readable, createWriteStream(tarball, { mode: 0o600, flags: "wx" }));
  } catch (err) {
    await rm(tarball, { force: true });
    throw err;
  }
  return tarball;
}
