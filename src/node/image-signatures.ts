import { createPublicKey, type KeyObject } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadOrCreateBuildKey } from "../auth/build-keys.js";
import { isErrno, isTabbifyError, TabbifyError } from "../core/errors.js";
import type { ImageSignatures, RegistryAccess, SignaturePolicy } from "../pipeline/deps.js";
import { RegistryClient } from "../registry/client.js";
import { signImage, verifyImageSignature } from "../registry/signatures.js";
import { type ReleaseSignatures, releaseImage, verifyReleaseManifest } from "./release-signatures.js";
import { pushReleaseArtifact } from "./releases-oci.js";

/**
 * The node's side of image signing: each tenant's build key lives in `<dataDir>/build-keys/`
 * (0600, created on first use); the keys a tenant trusts are its build key plus any SPKI PEM
 * files an operator drops in `<dataDir>/trusted-keys/<tenant>/` (keys of an outside CI, say).
 * The same key signs every release manifest (release-signatures.ts).
 */

/** Images and release manifests: what the node's pipeline and rollouts sign and check. */
export type NodeSignatures = ImageSignatures & ReleaseSignatures;

const manifestAccept = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** `env=policy,…`, e.g. `prod=require,test=warn`; an environment not named is prod ? require : warn. */
export function parseSignaturePolicy(text: string | undefined): Map<string, SignaturePolicy> {
  const map = new Map<string, SignaturePolicy>();
  for (const item of (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [env, policy, extra] = item.split("=");
    if (
      !env ||
      !/^[a-z0-9][a-z0-9-]{0,62}$/.test(env) ||
      (policy !== "require" && policy !== "warn") ||
      extra !== undefined
    ) {
      throw new TabbifyError(
        "USAGE",
        `--signature-policy: "${item.slice(0, 80)}" is not ENV=require or ENV=warn (e.g. prod=require,test=warn)`,
      );
    }
    map.set(env, policy);
  }
  return map;
}

export function policyFor(
  policies: ReadonlyMap<string, SignaturePolicy>,
  environment: string,
): SignaturePolicy {
  return policies.get(environment) ?? (environment === "prod" ? "require" : "warn");
}

async function trustedKeys(dataDir: string, tenant: string): Promise<KeyObject[]> {
  const keys = [(await loadOrCreateBuildKey(dataDir, tenant)).publicKey];
  const dir = join(dataDir, "trusted-keys", tenant);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return keys;
    throw err;
  }
  for (const name of names.filter((n) => n.endsWith(".pem")).sort()) {
    keys.push(createPublicKey(await readFile(join(dir, name), "utf8")));
  }
  return keys;
}

export function nodeImageSignatures(opts: {
  registry: RegistryAccess;
  dataDir: string;
  policies?: ReadonlyMap<string, SignaturePolicy>;
  /** Default `http://<registry host>`. */
  registryUrl?: string;
}): NodeSignatures {
  const base = (opts.registryUrl ?? `http://${opts.registry.host}`).replace(/\/+$/, "");
  const policies = opts.policies ?? new Map();
  const repo = (tenant: string, appUuid: string) => `${tenant.toLowerCase()}/${appUuid.toLowerCase()}`;
  const pulling = async (tenant: string, appUuid: string) => {
    const token = await (opts.registry.pullToken ?? opts.registry.pushToken)(tenant, appUuid);
    return new RegistryClient({ url: base, token });
  };
  const signatures: NodeSignatures = {
    policy: (environment) => policyFor(policies, environment),
    async sign(tenant, appUuid, digest) {
      const name = repo(tenant, appUuid);
      const registry = new RegistryClient({
        url: base,
        token: await opts.registry.pushToken(tenant, appUuid),
        failure: "SIGNATURE_PUSH_FAILED",
      });
      const image = await registry.repository(name).describeManifest(digest, manifestAccept);
      if (!image) throw new TabbifyError("SIGNATURE_PUSH_FAILED", `${name}@${digest} is not in the registry`);
      const key = await loadOrCreateBuildKey(opts.dataDir, tenant.toLowerCase());
      const signed = await signImage(registry, {
        name,
        digest,
        dockerReference: `${opts.registry.host}/${name}`,
        key: key.privateKey,
        imageManifest: { mediaType: image.mediaType, size: image.size },
      });
      return signed.digest;
    },
    async verify(tenant, appUuid, digest) {
      const verified = await verifyImageSignature(await pulling(tenant, appUuid), {
        name: repo(tenant, appUuid),
        digest,
        trustedKeys: await trustedKeys(opts.dataDir, tenant.toLowerCase()),
      });
      return verified.signature;
    },
    async verifyRelease(tenant, appUuid, release) {
      return verifyReleaseManifest(await pulling(tenant, appUuid), {
        name: repo(tenant, appUuid),
        release,
        trustedKeys: await trustedKeys(opts.dataDir, tenant.toLowerCase()),
      });
    },
    async signRelease(tenant, appUuid, release) {
      try {
        return await signatures.verifyRelease(tenant, appUuid, release);
      } catch (err) {
        // Not signed yet (or its tag was moved): push it (the same bytes each time) and sign it.
        if (!isTabbifyError(err, "SIGNATURE_INVALID")) throw err;
      }
      const image = releaseImage(release);
      const artifact = await pushReleaseArtifact(
        {
          registryUrl: base,
          repository: repo(tenant, appUuid),
          imageDigest: image === undefined ? undefined : release.digest,
          token: await opts.registry.pushToken(tenant, appUuid),
        },
        release,
      );
      return { artifact, signature: await signatures.sign(tenant, appUuid, artifact) };
    },
  };
  return signatures;
}
