import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import { isTabbifyError } from "../core/errors.js";
import { requireApiKey } from "./api-auth.js";

function app() {
  const server = Fastify({ logger: false });
  server.setErrorHandler((err, _req, reply) => {
    const status = isTabbifyError(err, "SUPERVISOR_AUTH_REQUIRED") ? 401 : isTabbifyError(err) ? 403 : 500;
    return reply.code(status).send({ code: isTabbifyError(err) ? err.code : "?" });
  });
  requireApiKey(server, "k3y");
  server.get("/health", async () => ({ ok: true }));
  server.get("/api/ready", async () => ({ ok: true }));
  server.get("/v1/apps", async () => ({ apps: [] }));
  server.get("/healthz", async () => ({ ok: true }));
  return server;
}

test("only /health and /api/* are open; the rest want the key", async () => {
  const server = app();
  const status = async (url: string, authorization?: string) =>
    (await server.inject({ method: "GET", url, headers: authorization ? { authorization } : {} })).statusCode;
  assert.equal(await status("/health"), 200);
  assert.equal(await status("/health?x=1"), 200);
  assert.equal(await status("/api/ready"), 200);
  assert.equal(await status("/healthz"), 401);
  assert.equal(await status("/v1/apps"), 401);
  assert.equal(await status("/nope"), 401);
  assert.equal(await status("/v1/apps", "Bearer k3y"), 200);
  assert.equal(await status("/v1/apps", "bearer k3y"), 200);
  assert.equal(await status("/v1/apps", "Bearer k3"), 403);
  assert.equal(await status("/v1/apps", "Bearer k3yy"), 403);
  assert.equal(await status("/v1/apps", "Basic k3y"), 401);
  assert.equal(await status("/v1/apps", "Bearer k3y extra"), 401);
  await server.close();
});

test("an empty key is refused at wiring time", () => {
  assert.throws(
    () => requireApiKey(Fastify(), ""),
    (err: unknown) => isTabbifyError(err, "SUPERVISOR_KEY_MISSING"),
  );
});
