import { type Digest, parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";

/** Repository name grammar of the distribution spec (path components joined by `/`). */
const nameGrammar = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const tagGrammar = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const maxNameLength = 255;

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= maxNameLength && nameGrammar.test(name);
}

export function checkName(name: string): string {
  if (!isValidName(name)) {
    throw new TabbifyError(
      "NAME_INVALID",
      name.length > maxNameLength
        ? `repository name is longer than ${maxNameLength} characters`
        : `invalid repository name "${name.slice(0, 300)}": lowercase components [a-z0-9] separated by "/", joined inside by ".", "_", "__" or "-"`,
      { name: name.slice(0, 300) },
    );
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return tagGrammar.test(tag);
}

/**
 * Parses a digest that came in a request. Any malformed or unsupported digest is the client's
 * DIGEST_INVALID (400): the spec reserves UNSUPPORTED for operations, not for digest values.
 */
export function requestDigest(value: string): Digest {
  try {
    return parseDigest(value);
  } catch (err) {
    const message = err instanceof Error ? err.message : "invalid digest";
    throw new TabbifyError("DIGEST_INVALID", message, { digest: value.slice(0, 200) });
  }
}

/** A manifest reference: a tag or a digest. */
export type Reference = { kind: "tag"; tag: string } | { kind: "digest"; digest: Digest };

export function parseReference(value: string): Reference {
  if (value.includes(":")) return { kind: "digest", digest: requestDigest(value) };
  if (!isValidTag(value)) {
    throw new TabbifyError(
      "TAG_INVALID",
      `invalid tag "${value.slice(0, 200)}": [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`,
      {
        tag: value.slice(0, 200),
      },
    );
  }
  return { kind: "tag", tag: value };
}

/**
 * A reference a manifest is read (GET, HEAD) or looked up by. One that is neither a valid tag nor
 * a digest names no manifest, so the answer is the spec's "not found" (MANIFEST_UNKNOWN, 404),
 * as docker-registry gives; only a PUT, which would create it, is told TAG_INVALID.
 */
export function lookupReference(value: string): Reference {
  try {
    return parseReference(value);
  } catch {
    throw new TabbifyError(
      "MANIFEST_UNKNOWN",
      `no manifest "${value.slice(0, 200)}": not a tag or a digest`,
      {
        reference: value.slice(0, 200),
      },
    );
  }
}

/** What a /v2 path addresses. `name` is validated by the caller (routes run the auth gate first). */
export type V2Route =
  | { kind: "base" }
  | { kind: "catalog" }
  | { kind: "tags"; name: string }
  | { kind: "manifest"; name: string; reference: string }
  | { kind: "blob"; name: string; digest: string }
  | { kind: "uploads"; name: string }
  | { kind: "upload"; name: string; id: string }
  | { kind: "referrers"; name: string; digest: string };

const routePatterns: [RegExp, (m: string[]) => V2Route][] = [
  [/^(.+)\/tags\/list$/, (m) => ({ kind: "tags", name: m[1]! })],
  [/^(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: "manifest", name: m[1]!, reference: m[2]! })],
  [/^(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: "uploads", name: m[1]! })],
  [/^(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: "upload", name: m[1]!, id: m[2]! })],
  [/^(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: "blob", name: m[1]!, digest: m[2]! })],
  [/^(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: "referrers", name: m[1]!, digest: m[2]! })],
];

function decodeComponent(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // left encoded: the validators reject it
  }
}

/**
 * The one parser of /v2 paths. Repository names contain slashes, so the path is matched from its
 * end: the last one or two components say what is addressed, everything before is the name.
 * Only the last component is percent-decoded (after splitting), so an encoded `/` never moves a
 * boundary and an encoded name is refused as NAME_INVALID. Returns null for a path no endpoint
 * serves.
 */
export function parseV2Path(pathname: string): V2Route | null {
  if (pathname === "/v2" || pathname === "/v2/") return { kind: "base" };
  if (!pathname.startsWith("/v2/")) return null;
  const rest = pathname.slice(4);
  if (rest === "_catalog") return { kind: "catalog" };
  for (const [pattern, build] of routePatterns) {
    const m = pattern.exec(rest);
    // The name is never decoded (no valid name contains `%`); the reference or digest after it is.
    if (m) return build(m.map((part, i) => (i >= 2 ? decodeComponent(part ?? "") : (part ?? ""))));
  }
  return null;
}

/** The repository a route names, if any (for auth scopes and namespace checks). */
export function routeRepository(route: V2Route): string | undefined {
  return "name" in route ? route.name : undefined;
}
