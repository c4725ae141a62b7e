import Fastify, { type FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { buildInfo, registerProbes } from "../core/probes.js";
import { tabbifyVersion } from "../core/version.js";
import { toAuthErrorReply } from "./errors.js";
import type { SigningKey } from "./keys.js";
import type { ResourceAccess } from "./registry-scope.js";
import { verifyTenantToken } from "./tenant-token.js";

/** A validate request is one token; anything much larger is not one of ours. */
const bodyLimitBytes = 64 * 1024;
const maxTokenLength = 16 * 1024;

/** The body of a successful `POST /v1/validate`. */
export interface ValidateResponse {
  subject: string;
  /** The raw `network` claim, or null when the token has none. */
  network: string | null;
  tenant: string;
  /** Unix seconds. */
  expires_at: number;
  /** A robot token's scopes; null for a token that speaks for the whole tenant. */
  scopes: ResourceAccess[] | null;
}

/**
 * The auth service's HTTP API:
 * - `GET /health` → `{"status": "ok"}`
 * - `POST /v1/validate` `{"token": "<tenant jwt>"}` → 200 ValidateResponse, 401 for an invalid or
 *   expired token, 400 for a body that is not such an object. Errors are `{"error", "code"}`.
 *
 * Logs (when enabled) go to stderr and never include bodies, so tokens stay out of them.
 */
export function buildAuthApp(opts: { key: SigningKey; logger?: boolean }): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ? { level: "info", stream: process.stderr } : false,
    bodyLimit: bodyLimitBytes,
  });

  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toAuthErrorReply(err);
    if (status >= 500) request.log.error({ err }, "request failed");
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: `no route ${request.method} ${request.url.split("?")[0]}`, code: "NOT_FOUND" }),
  );

  app.get("/health", async () => ({ status: "ok" }));
  // Its one dependency, the signing key, is loaded before the app exists: ready once listening.
  registerProbes(app, { build: buildInfo(tabbifyVersion) });

  app.post("/v1/validate", async (request): Promise<ValidateResponse> => {
    const body: unknown = request.body;
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new TabbifyError("BAD_REQUEST", 'body must be a JSON object like {"token": "<jwt>"}');
    }
    const token = (body as { token?: unknown }).token;
    if (typeof token !== "string" || token === "") {
      throw new TabbifyError("BAD_REQUEST", 'body is missing "token" (a non-empty string)');
    }
    if (token.length > maxTokenLength) {
      throw new TabbifyError("BAD_REQUEST", `"token" is longer than ${maxTokenLength} characters`);
    }
    const identity = await verifyTenantToken(opts.key, token);
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
