/**
 * The `handler_artifact` deploy field, handled on the supervisor before the other deploy hooks:
 * `{registry_url, repository, digest}` of a handler bundle in the platform registry, pulled by
 * digest with the body's `registry_token` (see src/supervisor/handler-artifact.ts). The body
 * then carries the platform's own `artifact_dir` and `command` for it, so the node never names a
 * path on this host and a handler deploy may run on any supervisor that reaches the registry. A
 * body naming `artifact_dir` or `command` beside `handler_artifact` is refused. The token is
 * left for deploy-pull.ts to take off the body.
 */
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { handlerCommand, parseHandlerArtifact, pullHandlerArtifact } from "../supervisor/handler-artifact.js";

const DEPLOY_ROUTE = "/v1/apps/:uuid/deploy";

export function registerHandlerPull(app: FastifyInstance, dataDir: string, logger: Logger): void {
  app.addHook("preHandler", async (req) => {
    if (req.routeOptions.url !== DEPLOY_ROUTE) return;
    const body = req.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    const fields = body as Record<string, unknown>;
    if (fields.handler_artifact === undefined) return;
    const ref = parseHandlerArtifact(fields.handler_artifact);
    delete fields.handler_artifact;
    if (fields.runtime !== "process" || fields.artifact_dir !== undefined || fields.command !== undefined) {
      throw new TabbifyError(
        "SPEC_INVALID",
        "handler_artifact runs on the process runtime with the platform's command: no artifact_dir or command",
      );
    }
    const token = fields.registry_token;
    if (typeof token !== "string" || token === "") {
      throw new TabbifyError("SPEC_INVALID", "handler_artifact needs registry_token (a pull token)");
    }
    const started = Date.now();
    const dir = await pullHandlerArtifact(ref, token, dataDir);
    Object.assign(fields, handlerCommand(dir));
    logger.info("pulled a handler artifact", {
      repository: ref.repository,
      digest: ref.digest,
      ms: Date.now() - started,
    });
  });
}
