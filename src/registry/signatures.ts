import { createHash, type KeyObject, sign, verify } from "node:crypto";
import { TabbifyError } from "../core/errors.js";

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

/** A registry as the signer and verifier reach it: base URL and the headers for `name`. */
export interface RegistryEndpoint {
  base: string;
  headers: Record<string, string>;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function pushBlob(reg: RegistryEndpoint, name: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const r = await fetch(new URL(`/v2/${name}/blobs/uploads/?digest=${digest}`, reg.base), {
    method: "POST",
    body: data,
    headers: { ...reg.headers, "content-type": "application/octet-stream" },
  });
  await r.body?.cancel();
  if (r.status !== 201)
    throw new TabbifyError("SIGNATURE_PUSH_FAILED", `pushing a signature blob to ${name}: ${r.status}`);
  return digest;
}

/**
 * Signs `<name>@<digest>` with `key` and pushes the signature next to it (referrer + `.sig` tag).
 * `dockerReference` is the repository as clients name it (`host:port/acme/web`).
 */
export async function signImage(
  reg: RegistryEndpoint,
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
  const configDigest = await pushBlob(reg, opts.name, config);
  const payloadDigest = await pushBlob(reg, opts.name, payload);
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
  const r = await fetch(new URL(`/v2/${opts.name}/manifests/${signatureTag(opts.digest)}`, reg.base), {
    method: "PUT",
    body: manifest,
    headers: { ...reg.headers, "content-type": signatureMediaTypes.manifest },
  });
  await r.body?.cancel();
  if (r.status !== 201)
    throw new TabbifyError(
      "SIGNATURE_PUSH_FAILED",
      `pushing the signature of ${opts.name}@${opts.digest}: ${r.status}`,
    );
  return { digest: sha256(manifest) };
}

async function getJson(reg: RegistryEndpoint, path: string, accept?: string): Promise<unknown> {
  const r = await fetch(new URL(path, reg.base), {
    headers: { ...reg.headers, ...(accept ? { accept } : {}) },
  });
  if (r.status !== 200) {
    await r.body?.cancel();
    throw new TabbifyError(
      "SIGNATURE_INVALID",
      `reading ${path.split("?")[0]} from the registry: ${r.status}`,
    );
  }
  return r.json();
}

const maxPayloadBytes = 64 * 1024;

/**
 * Verifies that `<name>@<digest>` carries a signature by one of `trustedKeys`: some referrer of
 * the digest (cosign's artifactType) whose payload is signed by a trusted key and names exactly
 * this digest. Throws SIGNATURE_INVALID saying why not; returns the signature manifest's digest.
 */
export async function verifyImageSignature(
  reg: RegistryEndpoint,
  opts: { name: string; digest: string; trustedKeys: readonly KeyObject[] },
): Promise<{ signature: string }> {
  const index = (await getJson(
    reg,
    `/v2/${opts.name}/referrers/${opts.digest}?artifactType=${encodeURIComponent(signatureMediaTypes.artifact)}`,
  )) as { manifests?: { digest: string }[] };
  const reasons: string[] = [];
  for (const entry of index.manifests ?? []) {
    const manifest = (await getJson(
      reg,
      `/v2/${opts.name}/manifests/${entry.digest}`,
      signatureMediaTypes.manifest,
    )) as {
      layers?: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    };
    for (const layer of manifest.layers ?? []) {
      const sig = layer.annotations?.[signatureMediaTypes.annotation];
      if (layer.mediaType !== signatureMediaTypes.payload || !sig || layer.size > maxPayloadBytes) continue;
      const r = await fetch(new URL(`/v2/${opts.name}/blobs/${layer.digest}`, reg.base), {
        headers: reg.headers,
      });
      if (r.status !== 200) {
        await r.body?.cancel();
        continue;
      }
      const payload = Buffer.from(await r.arrayBuffer());
      if (payload.length > maxPayloadBytes || sha256(payload) !== layer.digest) continue;
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
