import { catalogAccess, type RepositoryAction, type ResourceAccess } from "../auth/registry-scope.js";
import { TabbifyError } from "../core/errors.js";
import { checkName, lookupReference, parseReference, requestDigest, type V2Route } from "./names.js";

/** The methods each kind of /v2 endpoint serves; anything else is UNSUPPORTED (405). */
const routeMethods: Record<V2Route["kind"], readonly string[]> = {
  base: ["GET", "HEAD"],
  catalog: ["GET"],
  tags: ["GET"],
  manifest: ["GET", "HEAD", "PUT", "DELETE"],
  blob: ["GET", "HEAD", "DELETE"],
  uploads: ["POST"],
  upload: ["GET", "PATCH", "PUT", "DELETE"],
  referrers: ["GET"],
};

/**
 * What a request needs from a token's `access` list: reads (GET, HEAD) need `pull`, writes
 * (POST, PUT, PATCH) need `push`, DELETE of a manifest or blob needs `delete`, and the catalog
 * needs `registry:catalog:*`. Cancelling an upload session is part of pushing (docker cancels the
 * session a refused mount leaves), so it needs `push`, not `delete`. `GET /v2/` needs nothing
 * beyond a valid token (null). Throws UNSUPPORTED for a method the endpoint does not serve.
 */
export function requiredAccess(method: string, route: V2Route): ResourceAccess | null {
  if (!routeMethods[route.kind].includes(method)) {
    throw new TabbifyError("UNSUPPORTED", `${method} is not supported on this endpoint`);
  }
  if (route.kind === "base") return null;
  if (route.kind === "catalog") return catalogAccess;
  let action: RepositoryAction;
  if (method === "GET" || method === "HEAD") action = "pull";
  else if (method === "DELETE" && route.kind !== "upload") action = "delete";
  else action = "push";
  return { type: "repository", name: route.name, actions: [action] };
}

/**
 * The path a route is forwarded upstream as, rebuilt from its validated parts: the upstream sees
 * exactly what the gate judged, never a raw path it might decode, clean or redirect differently
 * (`%2e%2e`, `//`, a trailing slash). Throws NAME_INVALID, TAG_INVALID, DIGEST_INVALID or
 * BLOB_UPLOAD_UNKNOWN for a part that is not what its endpoint takes (MANIFEST_UNKNOWN for a
 * manifest read by a reference that is neither tag nor digest, as the service answers).
 */
export function canonicalPath(route: V2Route, method: string): string {
  switch (route.kind) {
    case "base":
      return "/v2/";
    case "catalog":
      return "/v2/_catalog";
    case "tags":
      return `/v2/${checkName(route.name)}/tags/list`;
    case "manifest": {
      const ref =
        method === "GET" || method === "HEAD"
          ? lookupReference(route.reference)
          : parseReference(route.reference);
      return `/v2/${checkName(route.name)}/manifests/${ref.kind === "tag" ? ref.tag : `${ref.digest.algorithm}:${ref.digest.hex}`}`;
    }
    case "blob":
      return `/v2/${checkName(route.name)}/blobs/${digestText(route.digest)}`;
    case "uploads":
      return `/v2/${checkName(route.name)}/blobs/uploads/`;
    case "upload":
      if (!uploadIdGrammar.test(route.id)) {
        throw new TabbifyError("BLOB_UPLOAD_UNKNOWN", "upload id is not one this registry hands out", {
          upload: route.id.slice(0, 80),
        });
      }
      return `/v2/${checkName(route.name)}/blobs/uploads/${route.id}`;
    case "referrers":
      return `/v2/${checkName(route.name)}/referrers/${digestText(route.digest)}`;
  }
}

/** Upload ids as registries hand them out (UUIDs, distribution's too): no `.`, `/` or `%`. */
const uploadIdGrammar = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

function digestText(value: string): string {
  const d = requestDigest(value);
  return `${d.algorithm}:${d.hex}`;
}
