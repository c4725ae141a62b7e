import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import Fastify, { type FastifyInstance } from "fastify";
import { describeApi, schemaAjv, schemaFailure } from "../core/api-docs.js";
import { dockerDaemonAnswers } from "../core/docker-cli.js";
import { isTabbifyError } from "../core/errors.js";
import { frameworkClientStatus, frameworkErrorCode } from "../core/http-errors.js";
import { acceptJsonWhateverContentType } from "../core/json-body.js";
import { buildInfo, registerProbes } from "../core/probes.js";
import { requireApiKey } from "./api-auth.js";
import { registerLogsRoute } from "./logs-route.js";
import { registerMigrateRoute } from "./migrate-route.js";
import { artifactDeployFromBody } from "./release-deploy.js";
import { type StartBody, supervisorSchemas as schemas, supervisorApiDocument } from "./schemas.js";
import { specFromBody } from "./spec.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The supervisor's HTTP API (SEED-FACTS §2). Errors are `{"error": msg}` plus safe detail fields.
 * Every route but `/health` and the `/api/*` probes takes the supervisor API key (api-auth.ts).
 * A start with a spec runs whatever `command` it names as this process's user: it is an admin
 * operation, which is why the key is never handed to tenants.
 */

/** The one place a domain error code becomes an HTTP status. */
export const statusOf: Record<string, number> = {
  SUPERVISOR_AUTH_REQUIRED: 401,
  SUPERVISOR_KEY_INVALID: 403,
  UUID_INVALID: 400,
  BAD_REQUEST: 400,
  SPEC_INVALID: 400,
  RUNTIME_UNKNOWN: 400,
  RUNTIME_UNAVAILABLE: 422,
  ARTIFACT_NOT_FOUND: 404,
  APP_NOT_FOUND: 404,
  APP_NOT_RUNNING: 409,
  RUNNER_UNHEALTHY: 503,
  SWAP_FAILED: 503,
  WORKLOAD_UNHEALTHY: 503,
  WORKLOAD_START_FAILED: 503,
  ADDRESS_ADD_FAILED: 500,
  MANIFEST_INVALID: 422,
  ARTIFACT_STORE_FAILED: 502,
  // A deploy's image pull from the registry: the registry (upstream of us) refused or failed.
  IMAGE_PULL_FAILED: 502,
  IMAGE_NOT_FOUND: 404,
  DIGEST_MISMATCH: 409,
  // A deploy that would drop a stateful app's data ({user_fault, previous_data_mount}).
  DATA_MOUNT_CONFLICT: 409,
  // A prod target handed a tag, `latest` or anything else that is not a pinned release.
  REF_NOT_PINNED: 400,
  APP_DATA_INVALID: 409,
  // Platform handoffs (src/upgrade/supervisor-handoff.ts) and runner restarts.
  RELEASE_NOT_FOUND: 404,
  RELEASE_RUNNING: 409,
  RELEASE_INVALID: 422,
  RELEASE_UNSAFE: 422,
  UPGRADE_UNAVAILABLE: 409,
  UPGRADE_IN_PROGRESS: 409,
  ROLE_NOT_READY: 503,
  RUNNER_RESTART_FAILED: 503,
};

export interface HealthInfo {
  supervisorId: string;
  ula: string;
  version: string;
  tags: () => string[];
  /** The id the node's roster gave this supervisor, while it is registered there. */
  rosterPeerId: () => string | undefined;
  startedAt: number;
}

export async function buildApi(
  supervisor: Supervisor,
  info: HealthInfo,
  auth: { apiKey: string },
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    ajv: schemaAjv,
  }).withTypeProvider<TypeBoxTypeProvider>();
  requireApiKey(app, auth.apiKey);
  // `curl -d '{"refresh": true}'` sends a form content type: bodies are JSON whatever the header.
  acceptJsonWhateverContentType(app);
  await describeApi(app, supervisorApiDocument(info.version));

  app.setErrorHandler((err, req, reply) => {
    const invalid = schemaFailure(err, req, "BAD_REQUEST");
    if (invalid)
      return reply.code(statusOf[invalid.code] ?? 400).send({ error: invalid.message, code: invalid.code });
    if (isTabbifyError(err)) {
      const status = statusOf[err.code] ?? 500;
      const detail = typeof err.detail === "object" && err.detail !== null ? err.detail : {};
      return reply.code(status).send({ ...detail, error: err.message, code: err.code });
    }
    const fastifyStatus = frameworkClientStatus(err);
    if (fastifyStatus !== undefined) {
      const code = frameworkErrorCode(fastifyStatus);
      return reply.code(fastifyStatus).send({ error: (err as Error).message, code });
    }
    return reply.code(500).send({ error: `internal error: ${(err as Error).message}` });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url}` }),
  );

  app.get("/health", { schema: schemas.health }, async () => {
    const tags = info.tags();
    return {
      status: "ok",
      supervisor_id: info.supervisorId,
      ula: info.ula,
      tabbify_version: info.version,
      version: info.version,
      firecracker: tags.includes("firecracker"),
      docker: tags.includes("docker"),
      tags,
      // Our extension: runners booted ahead (ready to take a start) and booting.
      warm_spares: supervisor.spareCounts(),
    };
  });

  registerProbes(app, {
    build: buildInfo(info.version),
    ready: info.tags().includes("docker") ? { docker: dockerReady } : {},
  });

  // `peer_id` is the roster's id for this supervisor while joined, its own sticky id otherwise.
  app.get("/v1/about", { schema: schemas.about }, async () => {
    const rosterPeerId = info.rosterPeerId();
    return {
      tabbify_version: info.version,
      version: info.version,
      peer_id: rosterPeerId ?? info.supervisorId,
      mesh_status: rosterPeerId ? "joined" : "no_mesh",
      uptime_secs: Math.floor((Date.now() - info.startedAt) / 1000),
    };
  });

  app.get("/v1/apps", { schema: schemas.list }, async () => ({ apps: await supervisor.list() }));

  app.get("/v1/apps/:uuid", { schema: schemas.describe }, async (req) =>
    supervisor.describe(req.params.uuid),
  );

  app.post("/v1/apps/:uuid/start", { schema: schemas.start }, async (req) => {
    const { refresh, specBody } = splitStartBody(req.body);
    const spec = specBody === undefined ? undefined : specFromBody(specBody, { deploy: false });
    return supervisor.start(req.params.uuid, spec, { refresh });
  });

  app.post("/v1/apps/:uuid/deploy", { schema: schemas.deploy }, async (req) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (body.artifact_version !== undefined) {
      return supervisor.deployArtifact(req.params.uuid, artifactDeployFromBody(body));
    }
    return supervisor.deploy(req.params.uuid, specFromBody(body, { deploy: true }));
  });

  registerMigrateRoute(app, supervisor);

  app.post("/v1/apps/:uuid/stop", { schema: schemas.stop }, async (req) => supervisor.stop(req.params.uuid));
  app.post("/v1/apps/:uuid/restart", { schema: schemas.restart }, async (req) =>
    supervisor.restart(req.params.uuid),
  );
  app.post("/v1/runners/restart", { schema: schemas.restartRunners }, async () =>
    supervisor.restartRunners(),
  );
  app.post("/v1/apps/:uuid/purge", { schema: schemas.purge }, async (req) =>
    supervisor.purge(req.params.uuid),
  );
  app.post("/v1/apps/:uuid/reset", { schema: schemas.reset }, async (req) =>
    supervisor.reset(req.params.uuid),
  );

  registerLogsRoute(app, (uuid) => supervisor.logPath(uuid));

  return app;
}

/**
 * Takes `refresh` (run the artifact store's newest version) off a start body (StartBody); what is
 * left is a spec body, or undefined when nothing is.
 */
function splitStartBody(body: Static<typeof StartBody>): { refresh: boolean; specBody: unknown } {
  // A POST without a body validates as null but arrives undefined.
  if (!body) return { refresh: false, specBody: undefined };
  const { refresh, ...rest } = body;
  return { refresh: refresh === true, specBody: Object.keys(rest).length === 0 ? undefined : rest };
}

/** The docker daemon answers `docker version` (what the docker runtime needs to run workloads). */
async function dockerReady(): Promise<void> {
  if (!(await dockerDaemonAnswers(2_500))) throw new Error("the docker daemon does not answer");
}
