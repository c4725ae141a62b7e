import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { schemaAjv, schemaFailure } from "../core/api-docs.js";
import { buildInfo, registerProbes } from "../core/probes.js";
import { tabbifyVersion } from "../core/version.js";
import { toAuthErrorReply } from "./errors.js";
import type { SigningKey } from "./keys.js";
import { authSchemas, type ValidateResponse as ValidateResponseSchema } from "./schemas.js";
import { verifyTenantToken } from "./tenant-token.js";

/** A validate request is one token; anything much larger is not one of ours. */
const bodyLimitBytes = 64 * 1024;

/** The body of a successful `POST /v1/validate` (its schema: schemas.ts). */
export type ValidateResponse = Static<typeof ValidateResponseSchema>;

/**
 * The auth service's HTTP API:
 * - `GET /health` → `{"status": "ok"}`
 * - `POST /v1/validate` `{"token": "<tenant jwt>"}` → 200 ValidateResponse, 401 for an invalid or
 *   expired token, 400 for a body that is not such an object. Errors are `{"error", "code"}`.
 *
 * Logs (when enabled) go to stderr and never include bodies, so tokens stay out of them.
 */
export function buildAuthApp(opts: { key: SigningKey; logger?: FastifyBaseLogger }): FastifyInstance {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: bodyLimitBytes,
    ajv: schemaAjv,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler((err, request, reply) => {
    const invalid = schemaFailure(err, request, "BAD_REQUEST");
    if (invalid) return reply.code(400).send({ error: invalid.message, code: invalid.code });
    const { status, body } = toAuthErrorReply(err);
    if (status >= 500) request.log.error({ err }, "request failed");
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: `no route ${request.method} ${request.url.split("?")[0]}`, code: "NOT_FOUND" }),
  );

  app.get("/health", { schema: authSchemas.health }, async () => ({ status: "ok" as const }));
  // Its one dependency, the signing key, is loaded before the app exists: ready once listening.
  registerProbes(app, { build: buildInfo(tabbifyVersion) });

  app.post("/v1/validate", { schema: authSchemas.validate }, async (request): Promise<ValidateResponse> => {
    const identity = await verifyTenantToken(opts.key, request.body.token);
    return {
      subject: identity.subject,
      network: identity.network ?? null,
      tenant: identity.tenant,
      expires_at: identity.expiresAt,
      scopes: identity.scopes ?? null,
    };
  });

  return app;
}
