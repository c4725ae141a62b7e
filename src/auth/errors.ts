import { isTabbifyError } from "../core/errors.js";
import { frameworkClientStatus } from "../core/http-errors.js";

/**
 * The auth API's one error→status table. Every error body is `{"error": <message>, "code": <code>}`.
 * Codes not listed here, and errors that are not TabbifyErrors, are bugs: 500 INTERNAL.
 */
export const authErrorStatus: Readonly<Record<string, number>> = {
  BAD_REQUEST: 400,
  TOKEN_INVALID: 401,
  TOKEN_EXPIRED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
};

export interface AuthErrorReply {
  status: number;
  body: { error: string; code: string };
}

export function toAuthErrorReply(err: unknown): AuthErrorReply {
  if (isTabbifyError(err)) {
    const status = authErrorStatus[err.code];
    if (status !== undefined) return { status, body: { error: err.message, code: err.code } };
  }
  // Framework messages are rewritten rather than passed through so that nothing from the
  // request body (which carries a token) can be echoed back.
  switch (frameworkClientStatus(err)) {
    case 413:
      return { status: 413, body: { error: "request body is too large", code: "PAYLOAD_TOO_LARGE" } };
    case 415:
      return {
        status: 415,
        body: { error: "send the body as Content-Type: application/json", code: "UNSUPPORTED_MEDIA_TYPE" },
      };
    case undefined:
      return { status: 500, body: { error: "internal error", code: "INTERNAL" } };
    default:
      return {
        status: 400,
        body: { error: 'body must be a JSON object like {"token": "<jwt>"}', code: "BAD_REQUEST" },
      };
  }
}
