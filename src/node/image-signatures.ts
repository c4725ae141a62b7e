import { createPublicKey, type KeyObject } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadOrCreateBuildKey } from "../auth/build-keys.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { ImageSignatures, RegistryAccess, SignaturePolicy } from "../pipeline/deps.js";
import { signImage, verifyImageSignature } from "../registry/signatures.js";

/**
 * The node's side of image signing: each tenant's build key lives in `<dataDir>/build-keys/`
 * (0600, created on first use); the keys a tenant trusts are its build key plus any SPKI PEM
 * files an operator drops in `<dataDir>/trusted-keys/<tenant>/` (keys of an outside CI, say).
 */

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
}): ImageSignatures {
  const base = (opts.registryUrl ?? `http://${opts.registry.host}`).replace(/\/+$/, "");
  const policies = opts.policies ?? new Map();
  const repo = (tenant: string, appUuid: string) => `${tenant.toLowerCase()}/${appUuid.toLowerCase()}`;
  return {
    policy: (environment) => policyFor(policies, environment),
    async sign(tenant, appUuid, digest) {
      const name = repo(tenant, appUuid);
      const token = await opts.registry.pushToken(tenant, appUuid);
      const headers = { authorization: `Bearer ${token}` };
      const head = await fetch(`${base}/v2/${name}/manifests/${digest}`, {
        method: "HEAD",
        headers: { ...headers, accept: manifestAccept },
        signal: AbortSignal.timeout(30_000),
      });
      if (head.status !== 200) {
        throw new TabbifyError(
          "SIGNATURE_PUSH_FAILED",
          `${name}@${digest} is not in the registry (HTTP ${head.status})`,
        );
      }
      const key = await loadOrCreateBuildKey(opts.dataDir, tenant.toLowerCase());
      const signed = await signImage(
        { base, headers },
        {
          name,
          digest,
          dockerReference: `${opts.registry.host}/${name}`,
          key: key.privateKey,
          imageManifest: {
            mediaType: head.headers.get("content-type") ?? manifestAccept.split(",")[0]!,
            size: Number(head.headers.get("content-length") ?? "0"),
          },
        },
      );
      return signed.digest;
    },
    async verify(tenant, appUuid, digest) {
      const name = repo(tenant, appUuid);
      const token = await (opts.registry.pullToken ?? opts.registry.pushToken)(tenant, appUuid);
      const verified = await verifyImageSignature(
        { base, headers: { authorization: `Bearer ${token}` } },
        { name, digest, trustedKeys: await trustedKeys(opts.dataDir, tenant.toLowerCase()) },
      );
      return verified.signature;
    },
  };
}
