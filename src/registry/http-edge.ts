import type { FastifyReply, FastifyRequest } from "fastify";
import { allows, type ResourceAccess } from "../auth/registry-scope.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { requiredAccess } from "./access.js";
import type { RegistryIdentity } from "./auth-gate.js";
import { toOciError } from "./errors.js";
import { parseV2Path } from "./names.js";
import type { CatalogScope, Page } from "./repository.js";

/** Small pieces of the /v2 edge: the request target, pagination, errors and the catalog's scope. */

export function pagination(query: URLSearchParams): { n?: number; last?: string } {
  const out: { n?: number; last?: string } = {};
  const n = query.get("n");
  if (n !== null && n !== "") {
    const value = Number(n);
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new TabbifyError(
        "PAGINATION_NUMBER_INVALID",
        `n must be a non-negative integer, got "${n.slice(0, 50)}"`,
      );
    }
    out.n = value;
  }
  const last = query.get("last");
  if (last !== null && last !== "") out.last = last;
  return out;
}

export function linkNext(reply: FastifyReply, path: string, n: number | undefined, page: Page<string>): void {
  if (page.next === undefined || n === undefined) return;
  reply.header("link", `<${path}?n=${n}&last=${encodeURIComponent(page.next)}>; rel="next"`);
}

/**
 * A request target's path and query, split by hand: WHATWG URL parsing would resolve `..` and `.`
 * segments, and a name with them must be refused, not silently turned into another repository.
 */
export function splitUrl(url: string): { pathname: string; query: URLSearchParams } {
  const queryAt = url.indexOf("?");
  return {
    pathname: queryAt === -1 ? url : url.slice(0, queryAt),
    query: new URLSearchParams(queryAt === -1 ? "" : url.slice(queryAt + 1)),
  };
}

/** The access a request needs, for its challenge; null when it needs none or names no endpoint. */
export function neededFor(request: FastifyRequest): ResourceAccess | null {
  const route = parseV2Path(request.url.split("?")[0] ?? "");
  if (!route) return null;
  try {
    return requiredAccess(request.method, route);
  } catch {
    return null;
  }
}

/** Fastify's own 4xx errors (bad headers, …) keep their status; everything else goes through the table. */
export function mapError(err: unknown) {
  if (!isTabbifyError(err)) {
    const status = (err as { statusCode?: unknown } | null)?.statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) {
      return {
        status,
        body: {
          errors: [{ code: "UNSUPPORTED", message: "the request could not be processed", detail: {} }],
        },
      };
    }
  }
  return toOciError(err);
}

export function isClientGone(err: unknown, request: FastifyRequest): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    request.raw.destroyed ||
    code === "ECONNRESET" ||
    code === "ERR_STREAM_PREMATURE_CLOSE" ||
    code === "ABORT_ERR"
  );
}

/**
 * What a token's catalog holds: the repositories under its tenant, and for a robot token only
 * those its scopes let it pull. Other tenants' names never reach the page, its Link or an error.
 */
export function catalogScope(identity: RegistryIdentity): CatalogScope {
  const { scopes } = identity;
  return {
    under: identity.tenant,
    ...(scopes ? { keep: (name: string) => allows(scopes, "repository", name, "pull") } : {}),
  };
}
