import type { ProofRow } from "../contract/ledger.js";
import {
  type Descriptor,
  HANDLER_ARTIFACT_TYPE,
  HANDLER_BUNDLE_MEDIA_TYPE,
  OCI_EMPTY,
  OCI_MANIFEST,
  PROOF_MEDIA_TYPE,
} from "../contract/oci.js";
import { TabbifyError } from "../core/errors.js";
import { fileBody } from "../core/file-body.js";
import { RegistryClient, sha256Digest } from "../registry/client.js";

/**
 * The node's pushes of a handler deploy into the tenant's repository of the platform registry
 * (see src/contract/oci.ts for the layout): the bundle as an OCI artifact carrying the contract
 * as annotations, and later its proof row as a referrer. Blobs stream from disk; the registry
 * checks every digest.
 */

export interface RegistryTarget {
  /** `http(s)://host[:port]`. */
  registryUrl: string;
  repository: string;
  /** A registry token with push on `repository`. */
  token: string;
}

const EMPTY = Buffer.from("{}");

function client(target: RegistryTarget) {
  const repo = new RegistryClient({
    url: target.registryUrl,
    token: target.token,
    timeoutMs: 120_000,
    failure: "REGISTRY_PUSH_FAILED",
  }).repository(target.repository);
  const manifest = async (reference: string, value: object): Promise<Descriptor> => {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = await repo.putManifest(reference, OCI_MANIFEST, bytes);
    return { mediaType: OCI_MANIFEST, digest, size: bytes.length };
  };
  const emptyConfig = async (): Promise<Descriptor> => {
    const digest = sha256Digest(EMPTY);
    await repo.pushBlob(digest, EMPTY);
    return { mediaType: OCI_EMPTY, digest, size: EMPTY.length };
  };
  const describe = async (digest: string): Promise<Descriptor> => {
    const head = await repo.describeManifest(digest, OCI_MANIFEST);
    if (!head)
      throw new TabbifyError("REGISTRY_PUSH_FAILED", `${target.repository}@${digest} is not in the registry`);
    return { mediaType: head.mediaType, digest, size: head.size };
  };
  return { repo, manifest, emptyConfig, describe };
}

/** The bundle file (already hashed as it arrived) as the handler artifact, tagged `tag`. */
export async function pushHandlerArtifact(
  target: RegistryTarget,
  bundle: { path: string; digest: string; size: number },
  annotations: Record<string, string>,
  tag: string,
): Promise<Descriptor> {
  const oci = client(target);
  // Streamed from disk; the registry checks the digest.
  await oci.repo.pushBlob(bundle.digest, () => fileBody(bundle.path));
  return oci.manifest(tag, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: HANDLER_ARTIFACT_TYPE,
    config: await oci.emptyConfig(),
    layers: [
      {
        mediaType: HANDLER_BUNDLE_MEDIA_TYPE,
        digest: bundle.digest,
        size: bundle.size,
        annotations: { "org.opencontainers.image.title": "handler.mjs" },
      },
    ],
    annotations,
  });
}

/** A proof row as a referrer of the bundle's manifest (by digest); returns the referrer's digest. */
export async function pushProofReferrer(
  target: RegistryTarget,
  bundleDigest: string,
  row: ProofRow,
): Promise<string> {
  const oci = client(target);
  const subject = await oci.describe(bundleDigest);
  const bytes = Buffer.from(`${JSON.stringify(row)}\n`);
  const digest = sha256Digest(bytes);
  await oci.repo.pushBlob(digest, bytes);
  const pushed = await oci.manifest("", {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: PROOF_MEDIA_TYPE,
    config: await oci.emptyConfig(),
    layers: [{ mediaType: PROOF_MEDIA_TYPE, digest, size: bytes.length }],
    subject,
    annotations: {
      "org.opencontainers.image.created": new Date(row.ts).toISOString(),
      "dev.tabbify.proof.kind": row.kind,
      "dev.tabbify.contract.sha": row.facts.contractSha,
    },
  });
  return pushed.digest;
}
