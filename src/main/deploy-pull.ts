/**
 * The pipeline's extra deploy fields, handled on the supervisor before its deploy route runs:
 * `registry_token` (pull credentials for our registry), `digest` (what the pulled image must be)
 * and `manifest_toml` (informational here). With a token and the docker runtime, the image is
 * pulled right here with it and checked against the digest; then all three fields are taken off
 * the body, so the runner gets the plain spec (the image is local by then) and the token is never
 * written to a runner record, its environment or a log.
 *
 * Pull failures leave as codes the API's status table knows: IMAGE_NOT_FOUND (404, the registry
 * has no such manifest), DIGEST_MISMATCH (409, the registry serves other bytes than the deploy
 * names) and IMAGE_PULL_FAILED (502, anything else the registry or the daemon refused).
 */
import type { FastifyInstance } from "fastify";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { pullWithRegistryToken } from "../runtimes/registry-pull.js";
import { assertPinnedForProd } from "../supervisor/release-deploy.js";

/** A migration runs in the release a deploy would roll: it takes the same fields. */
const RELEASE_ROUTES = new Set(["/v1/apps/:uuid/deploy", "/v1/apps/:uuid/migrate"]);

/** What docker prints when the registry answers MANIFEST_UNKNOWN / NAME_UNKNOWN for the reference. */
const MANIFEST_MISSING = /manifest unknown|name unknown|manifest for \S+ not found/i;

/** A failed pull as the supervisor reports it; other errors pass through unchanged. */
export function pullFailure(err: unknown): unknown {
  if (isTabbifyError(err, "IMAGE_DIGEST_MISMATCH")) return new TabbifyError("DIGEST_MISMATCH", err.message);
  if (isTabbifyError(err, "IMAGE_PULL_FAILED") && MANIFEST_MISSING.test(err.message)) {
    return new TabbifyError("IMAGE_NOT_FOUND", err.message);
  }
  return err;
}

export function registerDeployPull(app: FastifyInstance, logger: Logger): void {
  app.addHook("preHandler", async (req) => {
    if (!RELEASE_ROUTES.has(req.routeOptions.url ?? "")) return;
    const body = req.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    const fields = body as Record<string, unknown>;
    // Nothing is pulled for a prod target handed an unpinned ref: refused before any side effect.
    assertPinnedForProd(fields);
    const token = fields.registry_token;
    const digest = fields.digest;
    delete fields.registry_token;
    delete fields.digest;
    delete fields.manifest_toml;
    if (token !== undefined && (typeof token !== "string" || token === "")) {
      throw new TabbifyError("SPEC_INVALID", "registry_token must be a non-empty string");
    }
    if (digest !== undefined && (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest))) {
      throw new TabbifyError("SPEC_INVALID", "digest must be sha256:<64 hex>");
    }
    const ref = fields.ref ?? fields.image;
    if (token === undefined || fields.runtime !== "docker" || typeof ref !== "string") return;
    const started = Date.now();
    let pulled: string | undefined;
    try {
      pulled = await pullWithRegistryToken(ref, token, digest);
    } catch (err) {
      throw pullFailure(err);
    }
    logger.info("pulled with a registry token", { image: ref, digest: pulled, ms: Date.now() - started });
  });
}
