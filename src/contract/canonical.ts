import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { Contract } from "./types.js";

/** RFC 8785 (JCS) text of a JSON value: sorted keys, no whitespace, canonical numbers. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error("value has no JSON form");
  return text;
}

/** The contract's identity: sha256 hex of its canonical JSON. */
export function contractSha(contract: Contract): string {
  return createHash("sha256").update(canonicalJson(contract), "utf8").digest("hex");
}
