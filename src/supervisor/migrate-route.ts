import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { DEFAULT_MIGRATION_TIMEOUT_SEC, MAX_MIGRATION_TIMEOUT_SEC } from "./migrate.js";
import { artifactDeployFromBody } from "./release-deploy.js";
import { supervisorSchemas } from "./schemas.js";
import { specFromBody } from "./spec.js";
import type { Supervisor } from "./supervisor.js";

/**
 * `POST /v1/apps/:uuid/migrate`: the deploy body of the release to migrate to (a pinned ref or an
 * artifact_version, checked exactly as a deploy checks it: a prod target refuses anything
 * unpinned) plus `migrate`, the command, and `timeout_sec`. Answers 200 with the exit code and
 * the log tail whether the command succeeded or not: what a failure means is the node's call.
 * Behind the supervisor key like every app route (api-auth.ts).
 */
export function registerMigrateRoute(app: FastifyInstance, supervisor: Supervisor): void {
  // The handler takes its params and body types from the route schema.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  typed.post("/v1/apps/:uuid/migrate", { schema: supervisorSchemas.migrate }, async (req) => {
    const { uuid } = req.params;
    const { migrate, timeout_sec, ...body } = req.body;
    const command = migrationCommand(migrate);
    const timeoutSec = timeoutOf(timeout_sec);
    const release =
      body.artifact_version !== undefined
        ? { artifact: artifactDeployFromBody(body) }
        : { spec: specFromBody(body, { deploy: true }) };
    return supervisor.migrate(uuid, release, command, timeoutSec);
  });
}

function migrationCommand(value: unknown): string[] {
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    value.length > 64 ||
    value.some((a) => typeof a !== "string" || a.length > 4096) ||
    value[0] === ""
  ) {
    throw new TabbifyError("SPEC_INVALID", "migrate must be a command as a list of strings");
  }
  return value as string[];
}

function timeoutOf(value: unknown): number {
  if (value === undefined) return DEFAULT_MIGRATION_TIMEOUT_SEC;
  if (
    typeof value !== "number" ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > MAX_MIGRATION_TIMEOUT_SEC
  ) {
    throw new TabbifyError("SPEC_INVALID", `timeout_sec must be 1 to ${MAX_MIGRATION_TIMEOUT_SEC}`);
  }
  return value;
}
