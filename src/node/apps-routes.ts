import { mkdir, open, rename } from "node:fs/promises";
import { join } from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AppRegistry, Caller, MutationResult } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import {
  auditSchema,
  deleteAppSchema,
  getAppSchema,
  listAppsSchema,
  patchAppSchema,
  putAppSchema,
  registryExportSchema,
} from "./schemas/apps.js";

/**
 * The app registry and audit API (bearer: node key, or a tenant token for that tenant's apps):
 *
 *   GET    /api/v1/apps                   the apps the caller may see
 *   GET    /api/v1/apps/:app              one app, by name or uuid
 *   PUT    /api/v1/apps/:app[?dry_run=1]  create or replace (201 when created)
 *   PATCH  /api/v1/apps/:app[?dry_run=1]  JSON merge patch (RFC 7396)
 *   DELETE /api/v1/apps/:app[?dry_run=1]
 *   GET    /api/v1/registry/export        node key: every app, also written to snapshots/
 *   GET    /api/v1/audit?after=&limit=    node key: the audit chain, a page at a time
 *
 * Mutations answer `{dry_run, changed, before, after, changes}`.
 */

export interface AppRoutesOptions {
  registry: AppRegistry;
  audit: AuditLog;
  callers: CallerResolver;
  /** Where `snapshots/` goes. */
  dataDir: string;
  now?: () => Date;
}

const AUDIT_PAGE_MAX = 1000;

function dryRunOf(req: FastifyRequest): boolean {
  const raw = (req.query as { dry_run?: unknown } | undefined)?.dry_run;
  if (raw === undefined || raw === "0" || raw === "false") return false;
  if (raw === "" || raw === "1" || raw === "true") return true;
  throw new TabbifyError("BAD_REQUEST", "dry_run must be 1 or 0");
}

function intParam(req: FastifyRequest, name: string, fallback: number, max: number): number {
  const raw = (req.query as Record<string, unknown> | undefined)?.[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || !/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n > max) {
    throw new TabbifyError("BAD_REQUEST", `${name} must be a whole number up to ${max}`);
  }
  return n;
}

function answer(result: MutationResult): { dry_run: boolean; changed: boolean } & Record<string, unknown> {
  return { dry_run: result.dry_run, changed: result.changed, ...result.diff };
}

export function registerAppRoutes(app: FastifyInstance, opts: AppRoutesOptions): void {
  const { registry, audit, callers, dataDir } = opts;
  const now = opts.now ?? (() => new Date());
  const callerOf = new WeakMap<FastifyRequest, Caller>();

  app.register(async (untyped) => {
    // Handlers take their params, query and body types from the route schemas.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    scope.addContentTypeParser(
      "application/merge-patch+json",
      { parseAs: "string" },
      scope.getDefaultJsonParser("error", "error"),
    );
    scope.addHook("onRequest", async (req) => {
      callerOf.set(req, await callers.resolve(req.headers.authorization));
    });
    const caller = (req: FastifyRequest): Caller => callerOf.get(req) as Caller;

    scope.get("/api/v1/apps", { schema: listAppsSchema }, async (req) => ({
      apps: await registry.list(caller(req)),
    }));
    scope.get("/api/v1/apps/:app", { schema: getAppSchema }, async (req) =>
      registry.get(caller(req), req.params.app),
    );
    scope.put("/api/v1/apps/:app", { schema: putAppSchema }, async (req, reply) => {
      const result = await registry.put(caller(req), req.params.app, req.body, dryRunOf(req));
      return reply.code(result.dry_run ? 200 : result.status).send(answer(result));
    });
    scope.patch("/api/v1/apps/:app", { schema: patchAppSchema }, async (req) =>
      answer(await registry.patch(caller(req), req.params.app, req.body, dryRunOf(req))),
    );
    scope.delete("/api/v1/apps/:app", { schema: deleteAppSchema }, async (req) =>
      answer(await registry.remove(caller(req), req.params.app, dryRunOf(req))),
    );

    scope.get("/api/v1/registry/export", { schema: registryExportSchema }, async (req) => {
      await callers.admin(req.headers.authorization);
      const exportedAt = now();
      const body = { exported_at: exportedAt.toISOString(), apps: await registry.list({ actor: "system" }) };
      const snapshot = await writeSnapshot(dataDir, exportedAt, body);
      return { ...body, snapshot };
    });

    scope.get("/api/v1/audit", { schema: auditSchema }, async (req) => {
      await callers.admin(req.headers.authorization);
      const after = intParam(req, "after", 0, Number.MAX_SAFE_INTEGER);
      const limit = Math.max(1, intParam(req, "limit", 100, AUDIT_PAGE_MAX));
      const events = await audit.page(after, limit);
      const body: { events: typeof events; next_after?: number } = { events };
      if (events.length === limit) body.next_after = events.at(-1)!.seq;
      return body;
    });
  });
}

/** `snapshots/registry-<UTC time>.json` under the data dir, 0600, written whole then renamed in. */
async function writeSnapshot(dataDir: string, at: Date, body: unknown): Promise<string> {
  const dir = join(dataDir, "snapshots");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stamp = at.toISOString().replaceAll(":", "-");
  const name = `registry-${stamp}.json`;
  const temp = join(dir, `.${name}.${process.pid}.tmp`);
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(body, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, join(dir, name));
  return `snapshots/${name}`;
}
