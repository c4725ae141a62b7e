import { createHash, type KeyObject } from "node:crypto";
import { canonicalJson } from "../contract/canonical.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { RegistryClient } from "../registry/client.js";
import { verifyImageSignature } from "../registry/signatures.js";
import { releaseArtifactTag, releaseManifestBytes } from "./releases-oci.js";
import { RELEASE_MANIFEST_MEDIA_TYPE, type Release } from "./releases-store.js";

/**
 * Signed release manifests. The artifact releases-oci.ts pushes (a referrer of the image, or the
 * `release-<id>` tag of a pushed release) is signed like an image, in cosign's key-based layout
 * (../registry/signatures.ts), with the tenant's build key: the signature names the artifact's
 * manifest digest, which names the layer digest, which is the sha256 of the release manifest's
 * canonical JSON. So a release the node holds is trusted when the artifact it recomputes from the
 * stored manifest carries a signature by a trusted key of the tenant; a release row edited in the
 * store, a release manifest pushed by anyone else, or one hung under another image, is not.
 */

/** The release manifest's artifact and the signature manifest that signs it. */
export interface SignedRelease {
  artifact: string;
  signature: string;
}

/** The node's signer and verifier of release manifests (image-signatures.ts makes it). */
export interface ReleaseSignatures {
  /** Pushes and signs the release's manifest, unless a trusted signature of it is there already. */
  signRelease(tenant: string, appUuid: string, release: Release): Promise<SignedRelease>;
  /** Throws SIGNATURE_INVALID unless the stored release manifest is signed by a trusted key. */
  verifyRelease(tenant: string, appUuid: string, release: Release): Promise<SignedRelease>;
}

/** An artifact manifest is a few hundred bytes; this bounds what a registry can make us read. */
const maxArtifactBytes = 64 * 1024;
/** Release-manifest referrers looked at per release: a pusher flooding them only blocks itself. */
const maxCandidates = 20;

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** The image a release runs (its digest is the artifact's subject), or undefined for a pushed one. */
export function releaseImage(release: Release): string | undefined {
  const image = release.manifest.image;
  return typeof image === "string" ? image : undefined;
}

/**
 * Why the stored release contradicts its own manifest, or undefined. The rollout reads the row's
 * digest and source next to the manifest: all must say the same thing as the signed manifest.
 */
function incoherence(release: Release): string | undefined {
  const m = release.manifest;
  if (m.release !== release.id) return `names release ${String(m.release)}`;
  if (m.app !== release.app) return `names app ${String(m.app)}`;
  if (m.digest !== release.digest) return `names digest ${String(m.digest)}, not ${release.digest}`;
  if (canonicalJson(m.source ?? null) !== canonicalJson(release.source)) return "names another source";
  const image = releaseImage(release);
  if (image !== undefined && !image.endsWith(`@${release.digest}`)) return `names image ${image}`;
  if (image === undefined && m.image != null) return "names an image that is not a reference";
  return undefined;
}

/** What `read` answers, or undefined when it is longer than ours could be. */
async function small<T>(read: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (isTabbifyError(err, "REGISTRY_ANSWER_TOO_LARGE")) return undefined;
    throw err;
  }
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json";

/** The artifacts that may be the release's manifest: its image's referrers, or its tag. */
async function candidates(reg: RegistryClient, name: string, release: Release): Promise<string[]> {
  const repo = reg.failingWith("SIGNATURE_INVALID").repository(name);
  if (releaseImage(release) === undefined) {
    const tagged = await small(() =>
      repo.manifest(releaseArtifactTag(release.id), ociManifest, maxArtifactBytes),
    );
    return tagged ? [sha256(tagged)] : [];
  }
  const index = await small(() =>
    repo.referrers(release.digest, RELEASE_MANIFEST_MEDIA_TYPE, maxArtifactBytes),
  );
  if (!index) return [];
  return (index.manifests ?? [])
    .filter((m) => m.annotations?.["dev.tabbify.release"] === release.id && typeof m.digest === "string")
    .map((m) => m.digest as string)
    .slice(0, maxCandidates);
}

/** Why the artifact at `digest` is not this release's manifest, or undefined when it is. */
async function mismatch(
  reg: RegistryClient,
  name: string,
  digest: string,
  release: Release,
): Promise<string | undefined> {
  const bytes = await small(() =>
    reg.failingWith("SIGNATURE_INVALID").repository(name).manifest(digest, ociManifest, maxArtifactBytes),
  );
  if (!bytes || sha256(bytes) !== digest) return "is not in the registry as such";
  let artifact: {
    artifactType?: unknown;
    layers?: { mediaType?: unknown; digest?: unknown }[];
    subject?: { digest?: unknown };
  };
  try {
    artifact = JSON.parse(bytes.toString("utf8")) as typeof artifact;
  } catch {
    return "is not JSON";
  }
  const layer = artifact.layers?.length === 1 ? artifact.layers[0] : undefined;
  if (
    artifact.artifactType !== RELEASE_MANIFEST_MEDIA_TYPE ||
    layer?.mediaType !== RELEASE_MANIFEST_MEDIA_TYPE
  )
    return "is not a release manifest";
  if (layer.digest !== sha256(releaseManifestBytes(release.manifest)))
    return "carries another manifest than the stored one";
  const subject = releaseImage(release) === undefined ? undefined : release.digest;
  if (artifact.subject?.digest !== subject)
    return `has subject ${String(artifact.subject?.digest ?? "none")}, not ${subject ?? "none"}`;
  return undefined;
}

/**
 * The release's stored manifest as a signed artifact in `name`: the first candidate that carries
 * exactly that manifest (for that image) and a signature by one of `trustedKeys`. Throws
 * SIGNATURE_INVALID saying why none does.
 */
export async function verifyReleaseManifest(
  reg: RegistryClient,
  opts: { name: string; release: Release; trustedKeys: readonly KeyObject[] },
): Promise<SignedRelease> {
  const { name, release } = opts;
  const contradiction = incoherence(release);
  if (contradiction) {
    throw new TabbifyError(
      "SIGNATURE_INVALID",
      `release ${release.id} does not match its own manifest, which ${contradiction}`,
      { release: release.id },
    );
  }
  const reasons: string[] = [];
  for (const digest of await candidates(reg, name, release)) {
    const why = await mismatch(reg, name, digest, release);
    if (why) {
      reasons.push(`${digest} ${why}`);
      continue;
    }
    try {
      const verified = await verifyImageSignature(reg, { name, digest, trustedKeys: opts.trustedKeys });
      return { artifact: digest, signature: verified.signature };
    } catch (err) {
      if (!isTabbifyError(err, "SIGNATURE_INVALID")) throw err;
      reasons.push(err.message);
    }
  }
  throw new TabbifyError(
    "SIGNATURE_INVALID",
    `the manifest of release ${release.id} carries no signature by a trusted key${reasons.length ? ` (${reasons.slice(0, 3).join("; ")})` : " (none is in the registry)"}`,
    { release: release.id },
  );
}
