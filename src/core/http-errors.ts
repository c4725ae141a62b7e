import { isTabbifyError } from "./errors.js";

/**
 * What every HTTP edge shares when it maps an error to a reply; each edge keeps its own table of
 * codes → statuses. Bodies are `{"error": message, "code": CODE}`.
 */
export interface HttpErrorReply {
  status: number;
  body: { error: string; code: string };
}

/** Fastify's own request errors (bad JSON, body too large, wrong content type) carry a 4xx statusCode. */
export function frameworkClientStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" && status >= 400 && status < 500 ? status : undefined;
}

/** The code a framework 4xx answers with. */
export function frameworkErrorCode(status: number): string {
  if (status === 413) return "PAYLOAD_TOO_LARGE";
  if (status === 415) return "UNSUPPORTED_MEDIA_TYPE";
  return "BAD_REQUEST";
}

/**
 * A TabbifyError whose code `table` lists gets that status; a framework 4xx keeps its status with
 * its code; anything else is a bug: 500 INTERNAL, with a message that hides internals.
 */
export function toHttpError(err: unknown, table: Readonly<Record<string, number>>): HttpErrorReply {
  if (isTabbifyError(err)) {
    const status = table[err.code];
    if (status !== undefined) return { status, body: { error: err.message, code: err.code } };
  }
  const framework = frameworkClientStatus(err);
  if (framework !== undefined) {
    return {
      status: framework,
      body: { error: (err as Error).message, code: frameworkErrorCode(framework) },
    };
  }
  return { status: 500, body: { error: "internal error", code: "INTERNAL" } };
}
