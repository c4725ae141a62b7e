/**
 * The pipeline's `release` deploy field, handled on the supervisor before its deploy route runs:
 * `{id, manifest}` of the release being rolled. The manifest is written read-only (0444) to
 * `<data-dir>/releases/<app>/<release>.json` and the spec gets `release_manifest` (that path; for
 * docker, mounted read-only at /run/tabbify/release.json) and `TABBIFY_RELEASE` (the id) in its
 * env, so the workload can tell which release it is. A body naming `release_manifest` itself is
 * refused: only this hook chooses which host file reaches a workload.
 */
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { isLowercaseUuid } from "../core/uuid.js";

/** A migration runs in the release a deploy would roll: it takes the same fields. */
const RELEASE_ROUTES = new Set(["/v1/apps/:uuid/deploy", "/v1/apps/:uuid/migrate"]);
/** A release manifest is a few hundred bytes; this bounds what a caller can make us write. */
const MAX_MANIFEST_BYTES = 64 * 1024;

export function registerDeployRelease(app: FastifyInstance, dataDir: string): void {
  const root = join(dataDir, "releases");
  app.addHook("preHandler", async (req) => {
    if (!RELEASE_ROUTES.has(req.routeOptions.url ?? "")) return;
    const body = req.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    const fields = body as Record<string, unknown>;
    if (fields.release_manifest !== undefined) {
      throw new TabbifyError("SPEC_INVALID", "unknown field(s): release_manifest");
    }
    const release = fields.release;
    delete fields.release;
    if (release === undefined) return;
    const { id, manifest } = (release ?? {}) as { id?: unknown; manifest?: unknown };
    if (typeof id !== "string" || !isLowercaseUuid(id)) {
      throw new TabbifyError("SPEC_INVALID", "release.id must be a release's uuid");
    }
    if (typeof manifest !== "object" || manifest === null || Array.isArray(manifest)) {
      throw new TabbifyError("SPEC_INVALID", "release.manifest must be a JSON object");
    }
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) {
      throw new TabbifyError("SPEC_INVALID", `release.manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
    }
    const uuid = String((req.params as { uuid?: unknown }).uuid ?? "").toLowerCase();
    if (!isLowercaseUuid(uuid)) return; // the route refuses it
    const dir = join(root, uuid);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const file = join(dir, `${id}.json`);
    const staged = `${file}.${process.pid}.${Date.now()}.tmp`;
    await writeFile(staged, text, { mode: 0o444 });
    await chmod(staged, 0o444);
    await rename(staged, file);
    fields.release_manifest = file;
    const env = typeof fields.env === "object" && fields.env !== null ? fields.env : {};
    fields.env = { ...(env as Record<string, unknown>), TABBIFY_RELEASE: id };
  });
}
