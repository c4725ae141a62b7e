import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { isDocsRoute } from "../core/api-docs.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";

/**
 * Who may call the supervisor's API: whoever holds its API key (the node, an admin). Only
 * `/health` and the `/api/*` probes are open. The key is the supervisor's own, never the node
 * key, so a supervisor host that leaks it does not hand over the control plane.
 *
 * Both sides are hashed first, so `timingSafeEqual` compares two equal-length digests and leaks
 * neither the key's length nor a matching prefix.
 */

/** Routes anyone may call, as the router matched them (so `/health/..` tricks match nothing open). */
function isOpenRoute(route: string | undefined): boolean {
  return route === "/health" || (route?.startsWith("/api/") ?? false) || isDocsRoute(route);
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/** Refuses every request but the open routes unless it carries `Authorization: Bearer <apiKey>`. */
export function requireApiKey(app: FastifyInstance, apiKey: string): void {
  if (apiKey === "") throw new TabbifyError("SUPERVISOR_KEY_MISSING", "the supervisor API key is empty");
  const keyDigest = digest(apiKey);
  app.addHook("onRequest", async (req, reply) => {
    if (isOpenRoute(req.routeOptions.url)) return;
    const presented = bearerToken(req.headers.authorization);
    if (presented === undefined) {
      reply.header("www-authenticate", 'Bearer realm="tabbify-supervisor"');
      throw new TabbifyError(
        "SUPERVISOR_AUTH_REQUIRED",
        "this route needs Authorization: Bearer <the supervisor API key>",
      );
    }
    if (!timingSafeEqual(digest(presented), keyDigest)) {
      throw new TabbifyError("SUPERVISOR_KEY_INVALID", "the bearer token is not this supervisor's API key");
    }
  });
}
