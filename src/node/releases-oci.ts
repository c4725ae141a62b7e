import { createHash } from "node:crypto";
import { TabbifyError } from "../core/errors.js";
import { RELEASE_MANIFEST_MEDIA_TYPE } from "./releases-store.js";

/**
 * Pushes a release manifest to the registry as an OCI artifact whose `subject` is the image, so
 * `GET /v2/<name>/referrers/<image digest>` lists it (OCI distribution spec 1.1). The artifact's
 * one layer is the manifest JSON; its config is the spec's empty descriptor.
 */

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG = { mediaType: "application/vnd.oci.empty.v1+json", bytes: Buffer.from("{}") };

export interface ReleaseArtifactTarget {
  /** `http(s)://host[:port]`. */
  registryUrl: string;
  /** `<tenant>/<app uuid>`. */
  repository: string;
  /** The image's manifest digest. */
  imageDigest: string;
  /** A registry token allowed to push to `repository`. */
  token: string;
}

/** Returns the artifact manifest's digest. */
export async function pushReleaseArtifact(
  target: ReleaseArtifactTarget,
  releaseManifest: Record<string, unknown>,
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

  const subjectRes = await call("HEAD", `${base}/manifests/${target.imageDigest}`, {
    headers: {
      accept: `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json`,
    },
  });
  const subject = {
    mediaType: subjectRes.headers.get("content-type") ?? OCI_MANIFEST,
    digest: target.imageDigest,
    size: Number(subjectRes.headers.get("content-length") ?? "0"),
  };

  const uploadBlob = async (bytes: Buffer): Promise<string> => {
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
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

  const layerBytes = Buffer.from(JSON.stringify(releaseManifest));
  const configDigest = await uploadBlob(EMPTY_CONFIG.bytes);
  const layerDigest = await uploadBlob(layerBytes);
  const artifact = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: RELEASE_MANIFEST_MEDIA_TYPE,
    config: { mediaType: EMPTY_CONFIG.mediaType, digest: configDigest, size: EMPTY_CONFIG.bytes.length },
    layers: [{ mediaType: RELEASE_MANIFEST_MEDIA_TYPE, digest: layerDigest, size: layerBytes.length }],
    subject,
    annotations: {
      "org.opencontainers.image.created": String(releaseManifest.created_at ?? new Date().toISOString()),
      "dev.tabbify.release": String(releaseManifest.release ?? ""),
    },
  };
  const body = Buffer.from(JSON.stringify(artifact));
  const digest = `sha256:${createHash("sha256").update(body).digest("hex")}`;
  const put = await call("PUT", `${base}/manifests/${digest}`, {
    headers: { "content-type": OCI_MANIFEST },
    body,
  });
  await put.body?.cancel();
  return digest;
}
