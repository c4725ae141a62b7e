import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { GcRootsReply } from "../registry/release-roots.js";
import type { Store } from "../store/index.js";
import type { NodeKeyCheck } from "./auth.js";
import { gcRootsSchema } from "./schemas/operations.js";

/**
 * `GET /api/v1/registry/gc-roots?keep=N`: what the registry's release-aware GC must keep, per
 * app repository (`<tenant>/<app uuid>`, read from each release's pinned image):
 * - the release each environment runs now;
 * - every release that could still be promoted: it ran in an environment and is newer than what
 *   the next environment runs now (environments in the order they first ran, prod last);
 * - the last N releases of the app, and the last N each environment ran.
 * Who may call: the registry events token holder (else the node key), as for the notifications.
 */

export interface ReleaseRow {
  id: string;
  app_uuid: string;
  digest: string;
  manifest: string;
}

export interface RunRow {
  app_uuid: string;
  environment: string;
  release_id: string;
  started_at: string;
}

/** Pure: the keep set of every app with releases. Release ids are uuid v7, so they sort by age. */
export function releaseRoots(
  releases: readonly ReleaseRow[],
  runs: readonly RunRow[],
  keepN: number,
): GcRootsReply {
  const byApp = new Map<string, ReleaseRow[]>();
  for (const r of releases) byApp.set(r.app_uuid, [...(byApp.get(r.app_uuid) ?? []), r]);
  const repositories: GcRootsReply["repositories"] = [];
  for (const [app, rows] of [...byApp].sort(([a], [b]) => a.localeCompare(b))) {
    const newestFirst = [...rows].sort((a, b) => b.id.localeCompare(a.id));
    const byId = new Map(rows.map((r) => [r.id, r]));
    const keep = new Map<string, string[]>();
    const add = (release: ReleaseRow | undefined, reason: string) => {
      if (release) keep.set(release.digest, [...(keep.get(release.digest) ?? []), reason]);
    };
    const appRuns = runs
      .filter((r) => r.app_uuid === app)
      .sort((a, b) => a.started_at.localeCompare(b.started_at));
    const envs = new Map<string, RunRow[]>();
    for (const run of appRuns) envs.set(run.environment, [...(envs.get(run.environment) ?? []), run]);
    const current = new Map([...envs].map(([env, list]) => [env, list.at(-1)!.release_id]));
    for (const [env, id] of current) add(byId.get(id), `running in ${env}`);
    // Promotion runs along the environments in the order they first ran, prod last.
    const order = [...envs.keys()].sort((a, b) => Number(a === "prod") - Number(b === "prod"));
    for (const [env, list] of envs) {
      const next = order[order.indexOf(env) + 1];
      const nextCurrent = next === undefined ? undefined : current.get(next);
      if (next !== undefined && nextCurrent !== undefined) {
        for (const id of new Set(list.map((r) => r.release_id))) {
          if (id.localeCompare(nextCurrent) > 0) add(byId.get(id), `promotable from ${env} to ${next}`);
        }
      }
      const lastN = [...new Set([...list].reverse().map((r) => r.release_id))].slice(0, keepN);
      for (const id of lastN) add(byId.get(id), `one of the last ${keepN} in ${env}`);
    }
    for (const r of newestFirst.slice(0, keepN)) add(r, `one of the last ${keepN} releases`);
    const repository = repositoryOf(newestFirst);
    if (!repository) continue;
    repositories.push({
      repository,
      app,
      releases: newestFirst.map((r) => r.digest),
      keep: [...keep].map(([digest, reasons]) => ({ digest, reason: [...new Set(reasons)].join("; ") })),
    });
  }
  return { keep_releases: keepN, repositories };
}

/** `<tenant>/<uuid>` from a release's `image` (`host[:port]/<tenant>/<uuid>@sha256:…`). */
function repositoryOf(rows: readonly ReleaseRow[]): string | undefined {
  for (const row of rows) {
    let image: unknown;
    try {
      image = (JSON.parse(row.manifest) as { image?: unknown }).image;
    } catch {
      continue;
    }
    if (typeof image !== "string") continue;
    const m = /^[^/]+\/([a-z0-9._-]+\/[a-z0-9._-]+)@sha256:[0-9a-f]{64}$/.exec(image);
    if (m) return m[1];
  }
  return undefined;
}

export function registerReleaseRootsRoute(
  app: FastifyInstance,
  opts: { store: Store; keyCheck: NodeKeyCheck },
): void {
  // Handlers take their params, query and body types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  typed.get(
    "/api/v1/registry/gc-roots",
    {
      schema: gcRootsSchema,
      onRequest: async (req) => opts.keyCheck.assert(req.headers.authorization),
    },
    async (req) => {
      const keep = Number(req.query.keep ?? "10");
      const releases = await opts.store.db
        .selectFrom("releases")
        .select(["id", "app_uuid", "digest", "manifest"])
        .execute();
      const runs = await opts.store.db
        .selectFrom("release_runs")
        .select(["app_uuid", "environment", "release_id", "started_at"])
        .execute();
      return releaseRoots(releases, runs, keep);
    },
  );
}
