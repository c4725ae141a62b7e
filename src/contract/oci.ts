/**
 * How a handler deploy sits in the registry (OCI image spec 1.1 artifacts, distribution spec 1.1
 * referrers):
 *
 * - the bundle: an image manifest with `artifactType` HANDLER_ARTIFACT_TYPE, the empty config
 *   descriptor, one layer (the bundled handler module, HANDLER_BUNDLE_MEDIA_TYPE), and the
 *   contract's `dev.tabbify.contract.*` labels as manifest `annotations`;
 * - its proof: a manifest with `artifactType` PROOF_MEDIA_TYPE and `subject` = the bundle's
 *   manifest, whose one layer is the proof row (`.tabbify/proofs.jsonl`'s line), so
 *   `GET /v2/<name>/referrers/<bundle digest>` lists it next to the signature and the release
 *   manifest.
 */

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_EMPTY = "application/vnd.oci.empty.v1+json";
export const HANDLER_ARTIFACT_TYPE = "application/vnd.tabbify.handler.v1";
export const HANDLER_BUNDLE_MEDIA_TYPE = "application/vnd.tabbify.handler.bundle.v1+javascript";
export const PROOF_MEDIA_TYPE = "application/vnd.tabbify.proof.v1+json";
/** The largest bundle a node takes and a supervisor pulls. */
export const MAX_HANDLER_BUNDLE = 64 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface HandlerArtifactRef {
  /** `http(s)://host[:port]` of the registry. */
  registryUrl: string;
  /** `<tenant>/<app uuid>`. */
  repository: string;
  /** The bundle manifest's digest. */
  digest: string;
}

export const DIGEST = /^sha256:[0-9a-f]{64}$/;
export const REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
