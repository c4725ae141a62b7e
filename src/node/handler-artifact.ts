import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
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
  const base = `${target.registryUrl.replace(/\/+$/, "")}/v2/${target.repository}`;
  const call = async (method: string, url: string, init: RequestInit & { duplex?: "half" } = {}) => {
    const res = await fetch(url, {
      method,
      ...init,
      headers: { authorization: `Bearer ${target.token}`, ...(init.headers as Record<string, string>) },
      signal: AbortSignal.timeout(120_000),
    });
    if (res.status >= 300 && !(method === "HEAD" && res.status === 404)) {
      const text = (await res.text()).slice(0, 300);
      throw new TabbifyError(
        "REGISTRY_PUSH_FAILED",
        `${method} ${new URL(url).pathname}: HTTP ${res.status} ${text}`,
      );
    }
    return res;
  };
  /** A blob from bytes or a file (streamed), unless the registry has it already. */
  const blob = async (digest: string, size: number, body: () => Buffer | Readable): Promise<void> => {
    const head = await call("HEAD", `${base}/blobs/${digest}`);
    if (head.status === 200) return;
    const started = await call("POST", `${base}/blobs/uploads/`);
    await started.body?.cancel();
    const location = new URL(started.headers.get("location") ?? "", base);
    location.searchParams.set("digest", digest);
    const data = body();
    const put = await call("PUT", location.toString(), {
      headers: { "content-type": "application/octet-stream", "content-length": String(size) },
      body: data instanceof Readable ? (Readable.toWeb(data) as ReadableStream) : data,
      ...(data instanceof Readable ? { duplex: "half" as const } : {}),
    });
    await put.body?.cancel();
  };
  const manifest = async (reference: string, value: object): Promise<Descriptor> => {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    const put = await call("PUT", `${base}/manifests/${reference === "" ? digest : reference}`, {
      headers: { "content-type": OCI_MANIFEST },
      body: bytes,
    });
    await put.body?.cancel();
    const answered = put.headers.get("docker-content-digest");
    if (answered && answered !== digest)
      throw new TabbifyError("REGISTRY_PUSH_FAILED", `the registry stored ${answered}, not ${digest}`);
    return { mediaType: OCI_MANIFEST, digest, size: bytes.length };
  };
  const emptyConfig = async (): Promise<Descriptor> => {
    const digest = `sha256:${createHash("sha256").update(EMPTY).digest("hex")}`;
    await blob(digest, EMPTY.length, () => EMPTY);
    return { mediaType: OCI_EMPTY, digest, size: EMPTY.length };
  };
  const describe = async (digest: string): Promise<Descriptor> => {
    const head = await call("HEAD", `${base}/manifests/${digest}`, { headers: { accept: OCI_MANIFEST } });
    if (head.status !== 200)
      throw new TabbifyError("REGISTRY_PUSH_FAILED", `${target.repository}@${digest} is not in the registry`);
    return {
      mediaType: head.headers.get("content-type") ?? OCI_MANIFEST,
      digest,
      size: Number(head.headers.get("content-length") ?? "0"),
    };
  };
  return { blob, manifest, emptyConfig, describe };
}

/** The bundle file (already hashed as it arrived) as the handler artifact, tagged `tag`. */
export async function pushHandlerArtifact(
  target: RegistryTarget,
  bundle: { path: string; digest: string; size: number },
  annotations: Record<string, string>,
  tag: string,
): Promise<Descriptor> {
  const oci = client(target);
  await oci.blob(bundle.digest, bundle.size, () => createReadStream(bundle.path));
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
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  await oci.blob(digest, bytes.length, () => bytes);
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
