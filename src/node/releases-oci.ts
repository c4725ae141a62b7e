import { createHash } from "node:crypto";
import { canonicalJson } from "../contract/canonical.js";
import { TabbifyError } from "../core/errors.js";
import { RELEASE_MANIFEST_MEDIA_TYPE } from "./releases-store.js";

/**
 * Pushes a release manifest to the registry as an OCI artifact. The artifact's one layer is the
 * manifest's RFC 8785 canonical JSON (so anyone holding the manifest recomputes the layer's
 * digest), its config is the spec's empty descriptor, and it is the same bytes for the same
 * release each time it is pushed. An image's release names the image as its `subject`, so
 * `GET /v2/<name>/referrers/<image digest>` lists it (OCI distribution spec 1.1); a pushed
 * release (`tcli push`: no image) is tagged `release-<release id>` instead.
 */

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG = { mediaType: "application/vnd.oci.empty.v1+json", bytes: Buffer.from("{}") };

export interface ReleaseArtifactTarget {
  /** `http(s)://host[:port]`. */
  registryUrl: string;
  /** `<tenant>/<app uuid>`. */
  repository: string;
  /** The image's manifest digest; absent for a pushed release. */
  imageDigest?: string | undefined;
  /** A registry token allowed to push to `repository`. */
  token: string;
}

/** What of a release its artifact carries. */
export interface ReleaseForArtifact {
  id: string;
  manifest: Record<string, unknown>;
  created_at: string;
}

/** The tag a pushed release's manifest artifact goes under. */
export function releaseArtifactTag(releaseId: string): string {
  return `release-${releaseId}`;
}

/** The layer bytes: the manifest's canonical JSON. */
export function releaseManifestBytes(manifest: Record<string, unknown>): Buffer {
  return Buffer.from(canonicalJson(manifest), "utf8");
}

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** Returns the artifact manifest's digest. */
export async function pushReleaseArtifact(
  target: ReleaseArtifactTarget,
  release: ReleaseForArtifact,
): Promise<string> {
  const base = `${target.registryUrl.replace(/\/+$/, "")}/v2/${target.repository}`;
  const auth = { authorization: `Bearer ${target.token}` };
  const call = async (method: string, url: string, init: RequestInit = {}): Promise<Response> => {
    const res = await fetch(url, {
      method,
      ...init,
      headers: { ...auth, ...(init.headers as Record<string, string> | undefined) },
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status >= 300) {
      const text = (await res.text()).slice(0, 300);
      throw new TabbifyError(
        "REGISTRY_PUSH_FAILED",
        `${method} ${new URL(url).pathname}: HTTP ${res.status} ${text}`,
      );
    }
    return res;
  };

  let subject: { mediaType: string; digest: string; size: number } | undefined;
  if (target.imageDigest !== undefined) {
    const subjectRes = await call("HEAD", `${base}/manifests/${target.imageDigest}`, {
      headers: {
        accept: `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json`,
      },
    });
    subject = {
      mediaType: subjectRes.headers.get("content-type") ?? OCI_MANIFEST,
      digest: target.imageDigest,
      size: Number(subjectRes.headers.get("content-length") ?? "0"),
    };
  }

  const uploadBlob = async (bytes: Buffer): Promise<string> => {
    const digest = sha256(bytes);
    const head = await fetch(`${base}/blobs/${digest}`, {
      method: "HEAD",
      headers: auth,
      signal: AbortSignal.timeout(30_000),
    });
    if (head.status === 200) return digest;
    const started = await call("POST", `${base}/blobs/uploads/`);
    await started.body?.cancel();
    const location = new URL(started.headers.get("location") ?? "", base);
    location.searchParams.set("digest", digest);
    const put = await call("PUT", location.toString(), {
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    await put.body?.cancel();
    return digest;
  };

  const layerBytes = releaseManifestBytes(release.manifest);
  const configDigest = await uploadBlob(EMPTY_CONFIG.bytes);
  const layerDigest = await uploadBlob(layerBytes);
  const artifact = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: RELEASE_MANIFEST_MEDIA_TYPE,
    config: { mediaType: EMPTY_CONFIG.mediaType, digest: configDigest, size: EMPTY_CONFIG.bytes.length },
    layers: [{ mediaType: RELEASE_MANIFEST_MEDIA_TYPE, digest: layerDigest, size: layerBytes.length }],
    ...(subject ? { subject } : {}),
    annotations: {
      "org.opencontainers.image.created": release.created_at,
      "dev.tabbify.release": release.id,
    },
  };
  const body = Buffer.from(JSON.stringify(artifact));
  const digest = sha256(body);
  const reference = subject ? digest : releaseArtifactTag(release.id);
  const put = await call("PUT", `${base}/manifests/${reference}`, {
    headers: { "content-type": OCI_MANIFEST },
    body,
  });
  await put.body?.cancel();
  return digest;
}
