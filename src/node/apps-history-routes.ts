import { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { isActive } from "../pipeline/executor.js";
import type { TargetResult } from "../pipeline/plan.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AppRegistry } from "./apps-registry.js";
import { callerFirst } from "./caller-first.js";
import { statusBody, streamEvents } from "./deploy-routes.js";
import type { NodePipeline } from "./pipeline.js";
import { appDeployEventsSchema, appDeployStatusSchema } from "./schemas/deploy.js";
import { historySchemas } from "./schemas/operations.js";

/**
 * An app's deploy history, for `tcli deploys` and `tcli logs --deploy` (node key, or a tenant
 * token for its own apps; another tenant's app or deploy is 404):
 *
 *   GET /api/v1/apps/:app/deploys?limit=N        newest first (default 20, at most 200)
 *   GET /api/v1/apps/:app/deploys/:id/log        the deploy's build and rollout log, as text
 *   GET /api/v1/apps/:app/deploys/latest/log     the same for the newest deploy
 *   GET /api/v1/apps/:app/deploys/:id            the deploy's status (as /v1/deploy/:id/status)
 *   GET /api/v1/apps/:app/deploys/:id/events     its events as SSE (as /v1/deploy/:id/events)
 *   GET /api/v1/apps/:app/environments           each environment's current and earlier releases
 *
 * The log is the deploy's stored events, one line each (`<ts> <step> <type>: <message>`), read
 * from the store a page at a time and streamed.
 */

export interface AppHistoryRoutesOptions {
  registry: AppRegistry;
  callers: CallerResolver;
  store: Store;
  /** Where live deploys are followed from (the SSE route). */
  pipeline: NodePipeline;
}

/** How many earlier runs each environment lists. */
const RUNS_PER_ENVIRONMENT = 20;

const PAGE = 500;

export interface DeploySummary {
  id: string;
  status: string;
  trigger: string;
  ref: string | null;
  created_at: string;
  finished_at: string | null;
  digest: string | null;
  error: { code: string; message: string; step: string } | null;
  targets: Array<{ supervisor: string; success: boolean; error?: string }>;
}

export function registerAppHistoryRoutes(app: FastifyInstance, opts: AppHistoryRoutesOptions): void {
  const { registry, callers, store, pipeline } = opts;
  type AppRoute = { Params: { app: string; id?: string }; Querystring: { limit?: string } };

  const latestId = async (uuid: string): Promise<string | undefined> =>
    (
      await store.db
        .selectFrom("deploys")
        .select("id")
        .where("app_uuid", "=", uuid)
        .orderBy("created_at", "desc")
        .orderBy("id", "desc")
        .limit(1)
        .executeTakeFirst()
    )?.id;

  const who = callerFirst((req) => callers.resolve(req.headers.authorization));

  const deploysRoute = { schema: historySchemas.deploys, onRequest: who.onRequest };
  app.get<AppRoute>("/api/v1/apps/:app/deploys", deploysRoute, async (req) => {
    const target = await registry.get(who.caller(req), req.params.app);
    const raw = req.query.limit ?? "20";
    const rows = await store.db
      .selectFrom("deploys")
      .selectAll()
      .where("app_uuid", "=", target.uuid)
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .limit(Number(raw))
      .execute();
    const deploys = rows.map((row): DeploySummary => {
      const request = JSON.parse(row.request) as { trigger?: string; ref?: string };
      const results = JSON.parse(row.results) as TargetResult[];
      return {
        id: row.id,
        status: row.status,
        trigger: request.trigger ?? "?",
        ref: request.ref ?? null,
        created_at: row.created_at,
        finished_at: row.finished_at,
        digest: row.digest,
        error: row.error === null ? null : (JSON.parse(row.error) as DeploySummary["error"]),
        targets: results.map((r) => ({
          supervisor: r.supervisor,
          success: r.success,
          ...(r.error ? { error: r.error } : {}),
        })),
      };
    });
    return { app: target.name, uuid: target.uuid, deploys };
  });

  /** The app's own deploy, or DEPLOY_NOT_FOUND (another app's or tenant's deploy looks absent). */
  const deployOf = async (req: FastifyRequest<AppRoute>) => {
    const target = await registry.get(who.caller(req), req.params.app);
    const id = req.params.id as string;
    const record = await pipeline.store.get(id);
    if (!record || record.app_uuid !== target.uuid) {
      throw new TabbifyError("DEPLOY_NOT_FOUND", `no deploy ${id.slice(0, 64)} of app ${target.name}`);
    }
    return record;
  };

  const statusRoute = { schema: appDeployStatusSchema, onRequest: who.onRequest };
  app.get<AppRoute>("/api/v1/apps/:app/deploys/:id", statusRoute, async (req, reply) => {
    const record = await deployOf(req);
    return reply.code(isActive(record.status) ? 202 : 200).send(statusBody(record));
  });

  app.get<AppRoute>(
    "/api/v1/apps/:app/deploys/:id/events",
    { schema: appDeployEventsSchema, onRequest: who.onRequest },
    async (req, reply) => streamEvents(pipeline, (await deployOf(req)).id, req, reply),
  );

  const environmentsRoute = { schema: historySchemas.environments, onRequest: who.onRequest };
  app.get<AppRoute>("/api/v1/apps/:app/environments", environmentsRoute, async (req) => {
    const target = await registry.get(who.caller(req), req.params.app);
    const environments = [];
    for (const name of target.environments) {
      const runs = await store.db
        .selectFrom("release_runs")
        .innerJoin("releases", "releases.id", "release_runs.release_id")
        .select([
          "release_runs.release_id",
          "release_runs.started_at",
          "release_runs.deploy_id",
          "releases.digest",
          "releases.source",
        ])
        .where("release_runs.app_uuid", "=", target.uuid)
        .where("release_runs.environment", "=", name)
        .orderBy("release_runs.started_at", "desc")
        .limit(RUNS_PER_ENVIRONMENT)
        .execute();
      const listed = runs.map((r) => ({
        release_id: r.release_id,
        digest: r.digest,
        source: JSON.parse(r.source) as unknown,
        started_at: r.started_at,
        deploy_id: r.deploy_id,
      }));
      environments.push({ name, current: listed[0] ?? null, runs: listed });
    }
    return { app: target.name, uuid: target.uuid, environments };
  });

  const logRoute = { schema: historySchemas.log, onRequest: who.onRequest };
  app.get<AppRoute>("/api/v1/apps/:app/deploys/:id/log", logRoute, async (req, reply) => {
    const target = await registry.get(who.caller(req), req.params.app);
    const asked = req.params.id as string;
    const id = asked === "latest" ? await latestId(target.uuid) : asked;
    const row = id
      ? await store.db
          .selectFrom("deploys")
          .select(["id", "app_uuid"])
          .where("id", "=", id)
          .executeTakeFirst()
      : undefined;
    if (!row || row.app_uuid !== target.uuid) {
      throw new TabbifyError(
        "DEPLOY_NOT_FOUND",
        asked === "latest"
          ? `app ${target.name} has not been deployed yet`
          : `no deploy ${asked.slice(0, 64)} of app ${target.name}: tcli deploys ${target.name} lists them`,
      );
    }
    void reply.type("text/plain; charset=utf-8").header("cache-control", "no-store");
    return reply.send(Readable.from(eventLines(store, row.id)));
  });
}

/** The deploy's events as text lines, a page of rows at a time. */
async function* eventLines(store: Store, id: string): AsyncGenerator<string> {
  let after = 0;
  for (;;) {
    const rows = await store.db
      .selectFrom("deploy_events")
      .select(["seq", "ts", "step", "type", "message"])
      .where("deploy_id", "=", id)
      .where("seq", ">", after)
      .orderBy("seq", "asc")
      .limit(PAGE)
      .execute();
    if (rows.length === 0) return;
    let text = "";
    for (const row of rows) {
      text += `${row.ts} ${row.step} ${row.type}${row.message ? `: ${row.message}` : ""}\n`;
      after = Number(row.seq);
    }
    yield text;
    if (rows.length < PAGE) return;
  }
}
