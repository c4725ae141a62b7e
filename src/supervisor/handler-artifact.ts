import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import {
  DIGEST,
  HANDLER_ARTIFACT_TYPE,
  HANDLER_BUNDLE_MEDIA_TYPE,
  type HandlerArtifactRef,
  MAX_HANDLER_BUNDLE,
  OCI_MANIFEST,
  REPOSITORY,
} from "../contract/oci.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { pathExists } from "../core/exists.js";
import { RegistryClient, sha256Digest } from "../registry/client.js";

/**
 * A handler artifact pulled from the registry by digest into `<data>/handler-artifacts/<hex>/`:
 * the bundle (`handler.mjs`, its bytes checked against the layer digest, the manifest's against
 * the digest asked for) beside this supervisor's own copy of the platform's handler host. The
 * directory is renamed into place whole, so one that exists is complete and is reused (a digest
 * names its bytes forever). The process spec is the platform's: the host runs the bundle.
 */

const here = dirname(fileURLToPath(import.meta.url));
const HOST_FILES = [
  ["main", "handler-host.js"],
  ["contract", "handler-host.js"],
  ["contract", "egress-client.js"],
  ["contract", "egress-proxy.js"],
] as const;
const MAX_MANIFEST_BYTES = 1024 * 1024;
const PULL_TIMEOUT_MS = 120_000;

export function parseHandlerArtifact(raw: unknown): HandlerArtifactRef {
  const o = (raw ?? {}) as Record<string, unknown>;
  const url = typeof o.registry_url === "string" ? o.registry_url : "";
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (
    typeof raw !== "object" ||
    raw === null ||
    !parsed ||
    !["http:", "https:"].includes(parsed.protocol) ||
    parsed.pathname !== "/" ||
    parsed.username !== "" ||
    typeof o.repository !== "string" ||
    !REPOSITORY.test(o.repository) ||
    typeof o.digest !== "string" ||
    !DIGEST.test(o.digest)
  ) {
    throw new TabbifyError(
      "SPEC_INVALID",
      "handler_artifact must be {registry_url: http(s)://host[:port], repository, digest: sha256:<64 hex>}",
    );
  }
  return { registryUrl: parsed.origin, repository: o.repository, digest: o.digest };
}

/** The spec fields for a pulled handler: where it is and the platform's command. */
export function handlerCommand(artifactDir: string): { artifact_dir: string; command: string[] } {
  return {
    artifact_dir: artifactDir,
    command: [process.execPath, join("host", "main", "handler-host.js"), "handler.mjs"],
  };
}

/** The client's errors as a pull's: unreachable and oversized are IMAGE_PULL_FAILED too. */
function pullFailure(err: unknown, tooLarge: string): unknown {
  if (isTabbifyError(err, "REGISTRY_ANSWER_TOO_LARGE"))
    return new TabbifyError("IMAGE_PULL_FAILED", tooLarge);
  if (isTabbifyError(err, "REGISTRY_UNREACHABLE")) return new TabbifyError("IMAGE_PULL_FAILED", err.message);
  return err;
}

export async function pullHandlerArtifact(
  ref: HandlerArtifactRef,
  token: string,
  dataDir: string,
): Promise<string> {
  const root = join(dataDir, "handler-artifacts");
  const dir = join(root, ref.digest.slice("sha256:".length));
  if (await pathExists(join(dir, "handler.mjs"))) return dir;
  const repo = new RegistryClient({
    url: ref.registryUrl,
    token,
    timeoutMs: PULL_TIMEOUT_MS,
    failure: "IMAGE_PULL_FAILED",
  }).repository(ref.repository);
  const notFound = () =>
    new TabbifyError("IMAGE_NOT_FOUND", `${ref.repository}@${ref.digest}: manifest unknown`);

  let bytes: Buffer | undefined;
  try {
    bytes = await repo.manifest(ref.digest, OCI_MANIFEST, MAX_MANIFEST_BYTES);
  } catch (err) {
    throw pullFailure(err, "the handler artifact's manifest is too large");
  }
  if (!bytes) throw notFound();
  if (sha256Digest(bytes) !== ref.digest)
    throw new TabbifyError("DIGEST_MISMATCH", `the registry served other bytes than ${ref.digest}`);
  const manifest = JSON.parse(bytes.toString("utf8")) as {
    artifactType?: unknown;
    layers?: { mediaType?: unknown; digest?: unknown; size?: unknown }[];
  };
  const layer = manifest.layers?.[0];
  if (
    manifest.artifactType !== HANDLER_ARTIFACT_TYPE ||
    manifest.layers?.length !== 1 ||
    layer?.mediaType !== HANDLER_BUNDLE_MEDIA_TYPE ||
    typeof layer.digest !== "string" ||
    !DIGEST.test(layer.digest) ||
    typeof layer.size !== "number" ||
    layer.size <= 0 ||
    layer.size > MAX_HANDLER_BUNDLE
  ) {
    throw new TabbifyError("SPEC_INVALID", `${ref.repository}@${ref.digest} is not a handler artifact`);
  }

  await mkdir(root, { recursive: true, mode: 0o700 });
  const staging = join(root, `.pull-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(staging, { mode: 0o700 });
    let blob: ReadableStream<Uint8Array> | undefined;
    try {
      blob = await repo.blob(layer.digest);
    } catch (err) {
      throw pullFailure(err, "the bundle is too large");
    }
    if (!blob) throw notFound();
    const hash = createHash("sha256");
    let size = 0;
    const limit = layer.size;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > limit)
          return done(new TabbifyError("DIGEST_MISMATCH", "the bundle is longer than its layer says"));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    await pipeline(
      Readable.fromWeb(blob as import("node:stream/web").ReadableStream),
      meter,
      createWriteStream(join(staging, "handler.mjs"), { mode: 0o600 }),
    );
    if (size !== limit || `sha256:${hash.digest("hex")}` !== layer.digest)
      throw new TabbifyError("DIGEST_MISMATCH", `the bundle's bytes are not ${layer.digest}`);
    for (const [part, file] of HOST_FILES) {
      await mkdir(join(staging, "host", part), { recursive: true, mode: 0o700 });
      await copyFile(join(here, "..", part, file), join(staging, "host", part, file));
    }
    await writeFile(join(staging, "package.json"), `${JSON.stringify({ type: "module", private: true })}\n`, {
      mode: 0o600,
    });
    try {
      await rename(staging, dir);
    } catch (err) {
      // Another pull of the same digest won: its directory is the same bytes.
      if (!(await pathExists(join(dir, "handler.mjs")))) throw err;
    }
    return dir;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
