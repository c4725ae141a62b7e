import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { TargetResult } from "../pipeline/plan.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AppRegistry } from "./apps-registry.js";
import { callerFirst } from "./caller-first.js";
import { historySchemas } from "./schemas/operations.js";

/**
 * An app's deploy history, for `tcli deploys` and `tcli logs --deploy` (node key, or a tenant
 * token for its own apps; another tenant's app or deploy is 404):
 *
 *   GET /api/v1/apps/:app/deploys?limit=N        newest first (default 20, at most 200)
 *   GET /api/v1/apps/:app/deploys/:id/log        the deploy's build and rollout log, as text
 *   GET /api/v1/apps/:app/deploys/latest/log     the same for the newest deploy
 *
 * The log is the deploy's stored events, one line each (`<ts> <step> <type>: <message>`), read
 * from the store a page at a time and streamed.
 */

export interface AppHistoryRoutesOptions {
  registry: AppRegistry;
  callers: CallerResolver;
  store: Store;
}

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
  const { registry, callers, store } = opts;
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
