/**
 * Per-tenant namespaces (the seed's phase 1): a tenant may touch only repositories under
 * `<tenant>/`. Registry names are lowercase, so the tenant is compared lowercased.
 *
 * A tenant must be one valid OCI path component, spelled in ASCII: `[a-z0-9]+` groups joined by
 * `.`, `_`, `__` or dashes (upper case allowed, it is lowercased). Anything else grants nothing,
 * not even `/v2/`. ASCII is checked before lowercasing because some non-ASCII letters lowercase
 * to ASCII ones (U+212A KELVIN SIGN becomes `k`), which would let one tenant alias another.
 */
const tenantPattern = /^[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*$/;
const repositoryPattern =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** The OCI spec's advice for the longest repository name clients can rely on. */
const maxRepositoryLength = 255;

/** A valid tenant as a route schema says it (a JSON Schema `pattern` and `maxLength`). */
export const TENANT_SCHEMA = { pattern: tenantPattern.source, maxLength: maxRepositoryLength } as const;

/** The tenant's namespace component, or undefined when the tenant may grant nothing. */
export function tenantNamespace(tenant: string): string | undefined {
  if (typeof tenant !== "string" || tenant.length > maxRepositoryLength || !tenantPattern.test(tenant)) {
    return undefined;
  }
  return tenant.toLowerCase();
}

export function isValidTenant(tenant: string): boolean {
  return tenantNamespace(tenant) !== undefined;
}

/**
 * The seed's `namespace::check` on a request path (a query string, if present, is ignored):
 * `/v2/` allow; `/v2/_catalog` deny (phase 1); `/v2/<tenant>/…` allow; anything else deny.
 *
 * Segments are percent-decoded before they are judged, and a path with an empty (other than a
 * trailing slash), `.` or `..` segment, an encoded `/` or `\`, or malformed escapes is denied: a router that decodes or
 * normalises differently must never see a path that leaves the tenant's prefix.
 */
export function namespaceCheck(tenant: string, path: string): "allow" | "deny" {
  const namespace = tenantNamespace(tenant);
  if (namespace === undefined || typeof path !== "string") return "deny";
  const pathOnly = path.split(/[?#]/, 1)[0] ?? "";
  if (pathOnly === "/v2/") return "allow";
  const raw = pathOnly.split("/");
  if (raw[0] !== "" || raw[1] !== "v2") return "deny";
  const rest = raw.slice(2);
  // A trailing slash is part of the API (`POST /v2/<name>/blobs/uploads/`); other empty
  // segments are not.
  if (rest.length > 1 && rest[rest.length - 1] === "") rest.pop();
  const segments: string[] = [];
  for (const segment of rest) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return "deny";
    }
    if (decoded === "" || decoded === "." || decoded === ".." || /[/\\]/.test(decoded)) return "deny";
    segments.push(decoded);
  }
  // `/v2/<tenant>` alone names no repository, so a route below the tenant is required.
  return segments.length >= 2 && segments[0] === namespace ? "allow" : "deny";
}

/**
 * Whether `tenant` may use `repository` (e.g. the source of a cross-repository mount): the name
 * must be a valid OCI repository name that begins with `<tenant lowercased>/`.
 */
export function repositoryAllowed(tenant: string, repository: string): boolean {
  const namespace = tenantNamespace(tenant);
  if (namespace === undefined || typeof repository !== "string") return false;
  return (
    repository.length <= maxRepositoryLength &&
    repositoryPattern.test(repository) &&
    repository.startsWith(`${namespace}/`)
  );
}
