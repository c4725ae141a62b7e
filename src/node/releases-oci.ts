import { canonicalJson } from "../contract/canonical.js";
import { TabbifyError } from "../core/errors.js";
import { type Descriptor, RegistryClient, sha256Digest } from "../registry/client.js";
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

/** Returns the artifact manifest's digest. */
export async function pushReleaseArtifact(
  target: ReleaseArtifactTarget,
  release: ReleaseForArtifact,
): Promise<string> {
  const repo = new RegistryClient({
    url: target.registryUrl,
    token: target.token,
    failure: "REGISTRY_PUSH_FAILED",
  }).repository(target.repository);

  let subject: Descriptor | undefined;
  if (target.imageDigest !== undefined) {
    subject = await repo.describeManifest(
      target.imageDigest,
      `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json`,
    );
    if (!subject)
      throw new TabbifyError(
        "REGISTRY_PUSH_FAILED",
        `${target.repository}@${target.imageDigest} is not in the registry`,
      );
    subject = { ...subject, digest: target.imageDigest };
  }

  const uploadBlob = async (bytes: Buffer): Promise<string> => {
    const digest = sha256Digest(bytes);
    await repo.pushBlob(digest, bytes);
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
  const digest = sha256Digest(body);
  await repo.putManifest(subject ? digest : releaseArtifactTag(release.id), OCI_MANIFEST, body);
  return digest;
}
