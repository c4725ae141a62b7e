import { isTabbifyError } from "../core/errors.js";

/**
 * The one table of the /v2 edge: every error code the registry (and the modules it calls) can
 * throw → the HTTP status and the OCI error code that goes in the body. Internal codes that are
 * not OCI codes (storage, auth client) are mapped onto the nearest OCI code here, and nowhere
 * else. Anything not in this table is a bug and becomes a 500.
 */
interface ErrorRow {
  status: number;
  /** The code in the OCI body, when it differs from the thrown code. */
  oci?: string;
  message: string;
}

export const registryErrors: Record<string, ErrorRow> = {
  BLOB_UNKNOWN: { status: 404, message: "blob unknown to registry" },
  BLOB_UPLOAD_INVALID: { status: 400, message: "blob upload invalid" },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: "blob upload unknown to registry" },
  DIGEST_INVALID: { status: 400, message: "provided digest did not match uploaded content" },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: "manifest references a blob unknown to the repository" },
  MANIFEST_INVALID: { status: 400, message: "manifest invalid" },
  MANIFEST_UNKNOWN: { status: 404, message: "manifest unknown" },
  MANIFEST_UNVERIFIED: { status: 400, message: "manifest failed signature verification" },
  NAME_INVALID: { status: 400, message: "invalid repository name" },
  NAME_UNKNOWN: { status: 404, message: "repository name not known to registry" },
  SIZE_INVALID: { status: 400, message: "provided length did not match content length" },
  /** A manifest over the size limit: the spec asks for 413 with SIZE_INVALID. */
  MANIFEST_TOO_LARGE: { status: 413, oci: "SIZE_INVALID", message: "manifest too large" },
  TAG_INVALID: { status: 400, message: "manifest tag did not match URI" },
  /** A tag an immutability rule covers, pushed to another digest or deleted (Harbor/Zot's 409). */
  TAG_IMMUTABLE: { status: 409, message: "tag is immutable" },
  UNAUTHORIZED: { status: 401, message: "authentication required" },
  DENIED: { status: 403, message: "requested access to the resource is denied" },
  UNSUPPORTED: { status: 405, message: "the operation is unsupported" },
  TOOMANYREQUESTS: { status: 429, message: "too many requests" },
  RANGE_INVALID: { status: 416, message: "requested range not satisfiable" },
  /** Bad `n` on tags/list or _catalog; distribution's code for it. */
  PAGINATION_NUMBER_INVALID: { status: 400, message: "invalid number of results requested" },
  /** Kept for clients that probe unknown /v2 paths: not an OCI code, distribution uses it too. */
  NOT_FOUND: { status: 404, oci: "NAME_UNKNOWN", message: "not found" },
  // Codes thrown by modules below or beside the registry, mapped to what an OCI client understands.
  PATH_NOT_FOUND: { status: 404, oci: "BLOB_UNKNOWN", message: "content not found" },
  PATH_INVALID: { status: 400, oci: "NAME_INVALID", message: "invalid path" },
  TOKEN_INVALID: { status: 401, oci: "UNAUTHORIZED", message: "invalid token" },
  TOKEN_EXPIRED: { status: 401, oci: "UNAUTHORIZED", message: "token expired" },
  /** A valid token without the action the request needs: the challenge names the scope to ask for. */
  INSUFFICIENT_SCOPE: { status: 401, oci: "UNAUTHORIZED", message: "insufficient scope" },
  /** A `scope` parameter at /auth/token that does not parse (not a /v2 error, so no OCI code). */
  SCOPE_INVALID: { status: 400, message: "invalid scope" },
  AUTH_UNAVAILABLE: { status: 503, oci: "UNAVAILABLE", message: "the auth service is unavailable" },
  UPSTREAM_UNAVAILABLE: { status: 502, oci: "UNAVAILABLE", message: "the upstream registry is unavailable" },
};

export interface OciErrorBody {
  errors: { code: string; message: string; detail: unknown }[];
}

export interface MappedError {
  status: number;
  body: OciErrorBody;
}

/** Maps a thrown value to a status and OCI body; unknown errors are 500s (bugs). */
export function toOciError(err: unknown): MappedError {
  if (isTabbifyError(err)) {
    const row = registryErrors[err.code];
    if (row) {
      return {
        status: row.status,
        body: {
          errors: [
            { code: row.oci ?? err.code, message: err.message || row.message, detail: err.detail ?? {} },
          ],
        },
      };
    }
  }
  return {
    status: 500,
    body: { errors: [{ code: "UNKNOWN", message: "internal error", detail: {} }] },
  };
}
