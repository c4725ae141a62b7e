import { toHttpError } from "../core/http-errors.js";

/**
 * The one table of the node's HTTP edge: every error code the node (and the modules it calls)
 * can throw → HTTP status. Bodies are always `{"error": message, "code": CODE}`. Anything not in
 * this table is a bug and becomes a 500 whose message hides internals.
 */
export const nodeErrorStatus: Record<string, number> = {
  BAD_REQUEST: 400,
  USAGE: 400,
  UUID_INVALID: 400,
  PEER_INVALID: 400,
  MESH_ULA_INVALID: 400,
  DEPLOY_REQUEST_INVALID: 400,
  REPO_URL_REFUSED: 400,
  SSH_REMOTE_UNSUPPORTED: 400,
  WEBHOOK_PAYLOAD_INVALID: 400,
  APP_INVALID: 400,
  WEBHOOK_SIGNATURE_INVALID: 401,
  UNAUTHORIZED: 401,
  MESH_TOKEN_INVALID: 401,
  FORBIDDEN: 403,
  CSRF_INVALID: 403,
  // A live dashboard cookie without the token only a dashboard page holds.
  SESSION_NEEDS_PAGE: 401,
  MESH_FORBIDDEN: 403,
  NOT_FOUND: 404,
  APP_NOT_FOUND: 404,
  PEER_UNKNOWN: 404,
  DEPLOY_NOT_FOUND: 404,
  APP_LOCKED: 409,
  APP_CONFLICT: 409,
  APP_NOT_RUNNING: 409,
  DEPLOY_LOCKED: 409,
  NOT_VERIFIED_IN: 409,
  SIGNATURE_INVALID: 409,
  RELEASE_NOT_FOUND: 404,
  REF_NOT_PINNED: 400,
  ROLLOUT_FAILED: 502,
  // The release's [deploy] migrate exited non-zero (or timed out): every target keeps its release.
  MIGRATION_FAILED: 502,
  // A release's manifest declares something the node cannot roll ([probes], [[environments]]).
  MANIFEST_INVALID: 400,
  ENVIRONMENT_UNKNOWN: 400,
  // A release names no supervisor to run it on (none declared, none before, none able).
  TARGETS_UNRESOLVABLE: 409,
  MESH_ULA_TAKEN: 409,
  MESH_FULL: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  APP_UNREACHABLE: 502,
  APP_STOPPED: 503,
  APP_TIMEOUT: 504,
  NODE_KEY_NOT_SET: 503,
  USER_CODE_NOT_FOUND: 404,
  ENV_INVALID: 400,
  ENV_UNREADABLE: 503,
  SUPERVISOR_KEY_NOT_SET: 503,
  // A supervisor the node asked did not answer, or answered other than 200 (supervisor/client.ts).
  SUPERVISOR_UNREACHABLE: 502,
  SUPERVISOR_REFUSED: 502,
  TOO_MANY_ATTEMPTS: 429,
  DEVICE_LOGIN_UNAVAILABLE: 503,
  DEVICE_LOGIN_BUSY: 503,
  MESH_UNAVAILABLE: 503,
  WEBHOOK_SECRET_UNSET: 503,
  CONTRACT_INVALID: 400,
  CONTRACT_SHA_MISMATCH: 400,
  REGION_UNKNOWN: 400,
  INVALID_LEDGER_LINE: 400,
  SESSION_TOKEN_INVALID: 401,
  PLAN_NOT_FOUND: 404,
  GRANT_NOT_FOUND: 404,
  SESSION_NOT_FOUND: 404,
  PLAN_CONFLICT: 409,
  GRANT_CONFLICT: 409,
  SESSION_CONFLICT: 409,
  PLAN_EXPIRED: 410,
  SESSION_EXPIRED: 410,
  UPGRADE_UNAVAILABLE: 409,
  UPGRADE_IN_PROGRESS: 409,
  UPGRADE_NOT_FOUND: 404,
  GIT_REF_NOT_FOUND: 404,
  SSH_KEY_MISSING: 503,
  SSH_HOST_KEY_UNKNOWN: 502,
  SSH_FETCH_FAILED: 502,
  REGISTRY_REQUIRED: 503,
  REGISTRY_PUSH_FAILED: 502,
  REGISTRY_UNREACHABLE: 502,
  REGISTRY_TOKEN_FAILED: 502,
  SIGNATURE_PUSH_FAILED: 502,
};

export interface NodeErrorBody {
  error: string;
  code: string;
}

export interface MappedNodeError {
  status: number;
  body: NodeErrorBody;
}

/** Maps a thrown value to a status and body; unknown errors are 500s (bugs). */
export function toNodeError(err: unknown): MappedNodeError {
  return toHttpError(err, nodeErrorStatus);
}
