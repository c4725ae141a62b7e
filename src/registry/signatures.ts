import { type KeyObject, sign, verify } from "node:crypto";
import { TabbifyError } from "../core/errors.js";
import { type OciRepository, type RegistryClient, sha256Digest } from "./client.js";

/**
 * Image signatures in cosign's key-based layout, so cosign (`cosign verify --key`) and
 * containers/image (`sigstoreSigned` policies: skopeo, podman, CRI-O) verify them as they are:
 * - the payload is a "simple signing" JSON document naming the image's manifest digest
 *   (`critical.image.docker-manifest-digest`) and repository (`critical.identity.docker-reference`);
 * - it is stored as the one layer (`application/vnd.dev.cosign.simplesigning.v1+json`) of an OCI
 *   image manifest whose layer annotation `dev.cosignproject.cosign/signature` is the base64
 *   ECDSA-P256/SHA-256 (ASN.1 DER) signature of the payload bytes;
 * - that manifest names the image as its `subject` (an OCI 1.1 referrer, artifactType
 *   `application/vnd.dev.cosign.artifact.sig.v1+json`) and is also tagged `sha256-<hex>.sig`,
 *   the tag cosign and containers/image look under.
 */
export const signatureMediaTypes = {
  payload: "application/vnd.dev.cosign.simplesigning.v1+json",
  artifact: "application/vnd.dev.cosign.artifact.sig.v1+json",
  annotation: "dev.cosignproject.cosign/signature",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
} as const;

export const simpleSigningType = "cosign container image signature";

/** The payload cosign signs for `<dockerReference>@<digest>`. */
export function simpleSigningPayload(dockerReference: string, digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": dockerReference },
        image: { "docker-manifest-digest": digest },
        type: simpleSigningType,
      },
      optional: null,
    }),
  );
}

/** `sha256-<hex>.sig`: the tag cosign's tag-based discovery reads. */
export function signatureTag(digest: string): string {
  return `${digest.replace(":", "-")}.sig`;
}

function sha256(data: Buffer): string {
  return sha256Digest(data);
}

async function pushBlob(repo: OciRepository, data: Buffer): Promise<string> {
  const digest = sha256(data);
  await repo.pushBlob(digest, data);
  return digest;
}

/**
 * Signs `<name>@<digest>` with `key` and pushes the signature next to it (referrer + `.sig` tag).
 * `dockerReference` is the repository as clients name it (`host:port/acme/web`).
 */
export async function signImage(
  reg: RegistryClient,
  opts: {
    name: string;
    digest: string;
    dockerReference: string;
    key: KeyObject;
    imageManifest: { mediaType: string; size: number };
  },
): Promise<{ digest: string }> {
  const payload = simpleSigningPayload(opts.dockerReference, opts.digest);
  const signature = sign("sha256", payload, opts.key).toString("base64");
  const config = Buffer.from(
    JSON.stringify({
      architecture: "",
      os: "",
      config: {},
      rootfs: { type: "layers", diff_ids: [sha256(payload)] },
    }),
  );
  const repo = reg.failingWith("SIGNATURE_PUSH_FAILED").repository(opts.name);
  const configDigest = await pushBlob(repo, config);
  const payloadDigest = await pushBlob(repo, payload);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: signatureMediaTypes.manifest,
      artifactType: signatureMediaTypes.artifact,
      config: { mediaType: signatureMediaTypes.config, size: config.length, digest: configDigest },
      layers: [
        {
          mediaType: signatureMediaTypes.payload,
          size: payload.length,
          digest: payloadDigest,
          annotations: { [signatureMediaTypes.annotation]: signature },
        },
      ],
      subject: {
        mediaType: opts.imageManifest.mediaType,
        size: opts.imageManifest.size,
        digest: opts.digest,
      },
    }),
  );
  await repo.putManifest(signatureTag(opts.digest), signatureMediaTypes.manifest, manifest);
  return { digest: sha256(manifest) };
}

const maxPayloadBytes = 64 * 1024;
/** A signature manifest is a few hundred bytes; a registry serving more is not serving one. */
const maxManifestBytes = 1024 * 1024;

/**
 * Verifies that `<name>@<digest>` carries a signature by one of `trustedKeys`: some referrer of
 * the digest (cosign's artifactType) whose payload is signed by a trusted key and names exactly
 * this digest. Throws SIGNATURE_INVALID saying why not; returns the signature manifest's digest.
 */
export async function verifyImageSignature(
  reg: RegistryClient,
  opts: { name: string; digest: string; trustedKeys: readonly KeyObject[] },
): Promise<{ signature: string }> {
  const repo = reg.failingWith("SIGNATURE_INVALID").repository(opts.name);
  const index = await repo.referrers(opts.digest, signatureMediaTypes.artifact);
  const reasons: string[] = [];
  for (const entry of index?.manifests ?? []) {
    let bytes: Buffer | undefined;
    try {
      bytes = await repo.manifest(entry.digest, signatureMediaTypes.manifest, maxManifestBytes);
    } catch (err) {
      if (!(err instanceof TabbifyError && err.code === "REGISTRY_ANSWER_TOO_LARGE")) throw err;
      reasons.push(`signature ${entry.digest} is larger than a signature manifest`);
      continue;
    }
    if (!bytes)
      throw new TabbifyError("SIGNATURE_INVALID", `${opts.name}@${entry.digest} is not in the registry`);
    const manifest = JSON.parse(bytes.toString("utf8")) as {
      layers?: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    };
    for (const layer of manifest.layers ?? []) {
      const sig = layer.annotations?.[signatureMediaTypes.annotation];
      if (layer.mediaType !== signatureMediaTypes.payload || !sig || layer.size > maxPayloadBytes) continue;
      let payload: Buffer | undefined;
      try {
        payload = await repo.smallBlob(layer.digest, maxPayloadBytes);
      } catch (err) {
        if (!(err instanceof TabbifyError)) throw err;
        payload = undefined;
      }
      if (!payload || sha256(payload) !== layer.digest) continue;
      const signature = Buffer.from(sig, "base64");
      if (!opts.trustedKeys.some((key) => verify("sha256", payload, key, signature))) {
        reasons.push(`signature ${entry.digest} is not by a trusted key`);
        continue;
      }
      let critical: { image?: { "docker-manifest-digest"?: unknown }; type?: unknown } | undefined;
      try {
        critical = (JSON.parse(payload.toString("utf8")) as { critical?: typeof critical }).critical;
      } catch {
        critical = undefined;
      }
      if (
        critical?.type !== simpleSigningType ||
        critical.image?.["docker-manifest-digest"] !== opts.digest
      ) {
        reasons.push(`signature ${entry.digest} does not name ${opts.digest}`);
        continue;
      }
      return { signature: entry.digest };
    }
  }
  throw new TabbifyError(
    "SIGNATURE_INVALID",
    `${opts.name}@${opts.digest} has no signature by a trusted key${reasons.length ? ` (${reasons.slice(0, 3).join("; ")})` : ""}`,
    { name: opts.name, digest: opts.digest },
  );
}
