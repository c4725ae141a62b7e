import { type Digest, parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";

export const mediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociEmpty: "application/vnd.oci.empty.v1+json",
  wasmComponent: "application/vnd.tabbify.wasm.component.v1",
  wasmLayer: "application/wasm",
} as const;

const imageManifestTypes = new Set<string>([mediaTypes.ociManifest, mediaTypes.dockerManifest]);
const indexTypes = new Set<string>([mediaTypes.ociIndex, mediaTypes.dockerManifestList]);
export const manifestMediaTypes = new Set<string>([...imageManifestTypes, ...indexTypes]);

/** Manifests larger than this are refused (the spec's recommended minimum limit). */
export const maxManifestBytes = 4 * 1024 * 1024;

/** Layer media types whose blobs live elsewhere (`urls`) and need not be in the registry. */
const foreignLayerTypes = new Set([
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** A blob a manifest needs: its digest, the size its descriptor declares, and which descriptor. */
export interface BlobReference {
  digest: Digest;
  size: number;
  /** `config` or `layers[<i>]`, for messages. */
  where: string;
}

/** What the registry needs to know about a manifest, read from its JSON once at push time. */
export interface ParsedManifest {
  mediaType: string;
  kind: "image" | "index";
  /** Blobs that must be in the repository (config and non-foreign layers), with their sizes. */
  blobs: BlobReference[];
  /** Manifests that must be in the repository (an index's children). */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(message: string): TabbifyError {
  return new TabbifyError("MANIFEST_INVALID", message, { reason: message });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isRecord(v) || !Object.values(v).every((x) => typeof x === "string"))
    throw invalid(`${where}.annotations must be an object of strings`);
  return v as Record<string, string>;
}

function descriptor(v: unknown, where: string): Descriptor {
  if (!isRecord(v)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, artifactType, urls, platform } = v;
  if (typeof mediaType !== "string" || mediaType.length === 0)
    throw invalid(`${where}.mediaType must be a string`);
  if (typeof digest !== "string") throw invalid(`${where}.digest must be a string`);
  try {
    parseDigest(digest);
  } catch {
    throw new TabbifyError(
      "DIGEST_INVALID",
      `${where}.digest "${digest.slice(0, 150)}" is not a valid digest`,
      {
        digest: digest.slice(0, 150),
      },
    );
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0)
    throw invalid(`${where}.size must be a non-negative integer`);
  if (artifactType !== undefined && typeof artifactType !== "string")
    throw invalid(`${where}.artifactType must be a string`);
  if (urls !== undefined && (!Array.isArray(urls) || !urls.every((u) => typeof u === "string")))
    throw invalid(`${where}.urls must be an array of strings`);
  if (platform !== undefined && !isRecord(platform)) throw invalid(`${where}.platform must be an object`);
  const out: Descriptor = { mediaType, digest, size };
  if (artifactType !== undefined) out.artifactType = artifactType as string;
  const annotations = stringMap(v.annotations, where);
  if (annotations) out.annotations = annotations;
  if (urls !== undefined) out.urls = urls as string[];
  if (platform !== undefined) out.platform = platform as Descriptor["platform"];
  return out;
}

/**
 * Parses and validates a manifest body. `contentType` is the request's Content-Type; the body's
 * own `mediaType` wins when present, and the two must agree when both name a manifest type.
 * Throws MANIFEST_INVALID (or DIGEST_INVALID for a malformed descriptor digest).
 */
export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    throw invalid("manifest is not valid JSON");
  }
  if (!isRecord(json)) throw invalid("manifest must be a JSON object");
  if (json.schemaVersion !== 2) throw invalid("manifest schemaVersion must be 2");
  const declared = typeof json.mediaType === "string" ? json.mediaType : undefined;
  if (json.mediaType !== undefined && declared === undefined)
    throw invalid("manifest mediaType must be a string");
  const header = contentType?.split(";")[0]?.trim().toLowerCase();
  const headerType = header && manifestMediaTypes.has(header) ? header : undefined;
  if (declared && headerType && declared !== headerType) {
    throw invalid(`manifest mediaType "${declared}" does not match Content-Type "${headerType}"`);
  }
  let mediaType = declared ?? headerType;
  if (!mediaType) {
    // OCI manifests may omit mediaType; the shape says which one it is.
    if (Array.isArray(json.manifests)) mediaType = mediaTypes.ociIndex;
    else if (json.config !== undefined) mediaType = mediaTypes.ociManifest;
  }
  if (!mediaType || !manifestMediaTypes.has(mediaType)) {
    throw invalid(
      `unsupported manifest media type "${(mediaType ?? header ?? "").slice(0, 150)}" (OCI image manifest/index or Docker schema2 manifest/list)`,
    );
  }
  if (json.artifactType !== undefined && typeof json.artifactType !== "string")
    throw invalid("manifest artifactType must be a string");
  const parsed: ParsedManifest = {
    mediaType,
    kind: indexTypes.has(mediaType) ? "index" : "image",
    blobs: [],
    manifests: [],
  };
  if (typeof json.artifactType === "string") parsed.artifactType = json.artifactType;
  const annotations = stringMap(json.annotations, "manifest");
  if (annotations) parsed.annotations = annotations;
  if (json.subject !== undefined) parsed.subject = descriptor(json.subject, "subject");

  if (parsed.kind === "image") {
    if (json.manifests !== undefined) throw invalid("an image manifest has no manifests field");
    const config = descriptor(json.config, "config");
    if (!Array.isArray(json.layers)) throw invalid("manifest layers must be an array");
    const layers = json.layers.map((l, i) => descriptor(l, `layers[${i}]`));
    parsed.blobs.push({ digest: parseDigest(config.digest), size: config.size, where: "config" });
    for (const [i, layer] of layers.entries()) {
      if (foreignLayerTypes.has(layer.mediaType) && layer.urls && layer.urls.length > 0) continue;
      parsed.blobs.push({ digest: parseDigest(layer.digest), size: layer.size, where: `layers[${i}]` });
    }
    if (!parsed.artifactType) parsed.artifactType = config.mediaType;
  } else {
    if (!Array.isArray(json.manifests)) throw invalid("index manifests must be an array");
    if (json.layers !== undefined || json.config !== undefined)
      throw invalid("an index has no config or layers");
    parsed.manifests = json.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
  }
  return parsed;
}

/**
 * The artifact type a referrers listing shows: the manifest's artifactType, else its config's
 * media type (an image manifest), else nothing.
 */
export function artifactTypeOf(parsed: ParsedManifest): string | undefined {
  return parsed.artifactType;
}

/** Parses an Accept header into media types (q-values and wildcards kept simple: present or not). */
export function acceptedTypes(accept: string | string[] | undefined): Set<string> {
  const raw = Array.isArray(accept) ? accept.join(",") : (accept ?? "");
  const out = new Set<string>();
  for (const part of raw.split(",")) {
    const [type, ...params] = part.split(";");
    const t = type?.trim().toLowerCase();
    if (!t) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    if (q && Number(q.slice(2)) === 0) continue;
    out.add(t);
  }
  return out;
}

export function isIndexType(mediaType: string): boolean {
  return indexTypes.has(mediaType);
}
