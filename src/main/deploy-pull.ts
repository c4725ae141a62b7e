/**
 * The pipeline's extra deploy fields, handled on the supervisor before its deploy route runs:
 * `registry_token` (pull credentials for our registry), `digest` (what the pulled image must be)
 * and `manifest_toml` (informational here). With a token and the docker runtime, the image is
 * pulled right here with it and checked against the digest; then all three fields are taken off
 * the body, so the runner gets the plain spec (the image is local by then) and the token is never
 * written to a runner record, its environment or a log.
 */
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { pullWithRegistryToken } from "../runtimes/registry-pull.js";

const DEPLOY_ROUTE = "/v1/apps/:uuid/deploy";

export function registerDeployPull(app: FastifyInstance, logger: Logger): void {
  app.addHook("preHandler", async (req) => {
    if (req.routeOptions.url !== DEPLOY_ROUTE) return;
    const body = req.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    const fields = body as Record<string, unknown>;
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
    const pulled = await pullWithRegistryToken(ref, token, digest);
    logger.info("pulled with a registry token", { image: ref, digest: pulled, ms: Date.now() - started });
  });
}
