import { createHash, type Hash } from "node:crypto";
import { TabbifyError } from "./errors.js";

/** Content digests as the OCI image spec defines them: `<algorithm>:<encoded>`. */
export type DigestAlgorithm = "sha256" | "sha512";
export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
}

const hexLength: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const digestGrammar = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/**
 * Parses a digest string. Throws `DIGEST_INVALID` for a malformed digest and `UNSUPPORTED` for a
 * well-formed one with an algorithm we do not implement.
 */
export function parseDigest(value: string): Digest {
  if (!digestGrammar.test(value))
    throw new TabbifyError("DIGEST_INVALID", `invalid digest "${value.slice(0, 150)}"`);
  const [algorithm, hex] = value.split(":") as [string, string];
  if (algorithm !== "sha256" && algorithm !== "sha512") {
    throw new TabbifyError(
      "UNSUPPORTED",
      `digest algorithm "${algorithm}" is not supported (use sha256 or sha512)`,
    );
  }
  if (hex.length !== hexLength[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new TabbifyError("DIGEST_INVALID", `invalid ${algorithm} digest "${value.slice(0, 150)}"`);
  }
  return { algorithm, hex };
}

export function formatDigest(d: Digest): string {
  return `${d.algorithm}:${d.hex}`;
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function newHasher(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(data: Buffer | string, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}
