import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { releaseStamp } from "./release-info.js";
import { buildStamp } from "./version.js";

/**
 * The three probes every Tabbify role serves on its listener, unauthenticated, so a load
 * balancer, an orchestrator or a rollout can check it without a credential:
 *
 *   GET /api/healthz   200 {status: "ok"}: the process answers
 *   GET /api/ready     200 {status: "ready", checks} | 503 {status: "not_ready", failing, checks}
 *   GET /api/version   200 {version, commit, built_at, release?}
 *
 * Each ready check is one dependency of the role (the node's store, the registry's storage, a
 * docker-capable supervisor's daemon); it throws when that dependency does not answer.
 */

export interface BuildInfo {
  version: string;
  /** The source commit the running build came from; null when unknown. */
  commit: string | null;
  /** ISO 8601; null when unknown. */
  built_at: string | null;
  /** The release id when this process runs as a Tabbify release. */
  release?: string;
}

/** A check throws when its dependency fails; it may return a line saying how it is (a restart count). */
export type ReadyChecks = Record<string, () => Promise<void | string>>;

export interface ProbeOptions {
  build: BuildInfo;
  ready?: ReadyChecks;
  /** How long one ready check may take before it counts as failing. Default 3 s. */
  checkTimeoutMs?: number;
}

export const PROBE_PATHS = ["/api/healthz", "/api/ready", "/api/version"] as const;

const Checks = Type.Record(
  Type.String(),
  Type.Object({
    ok: Type.Boolean(),
    error: Type.Optional(Type.String()),
    detail: Type.Optional(Type.String()),
  }),
);

export const probeSchemas = {
  healthz: {
    summary: "The process answers (unauthenticated)",
    tags: ["probes"],
    response: { 200: Type.Object({ status: Type.Literal("ok") }) },
  },
  version: {
    summary: "Version, source commit and build time (unauthenticated)",
    tags: ["probes"],
    response: {
      200: Type.Object({
        version: Type.String(),
        commit: Type.Union([Type.String(), Type.Null()]),
        built_at: Type.Union([Type.String(), Type.Null()]),
        release: Type.Optional(Type.String()),
      }),
    },
  },
  ready: {
    summary: "Every dependency of this role answers (unauthenticated)",
    tags: ["probes"],
    response: {
      200: Type.Object({ status: Type.Literal("ready"), checks: Checks }),
      503: Type.Object({
        status: Type.Literal("not_ready"),
        error: Type.String(),
        code: Type.String(),
        failing: Type.Array(Type.String()),
        checks: Checks,
      }),
    },
  },
};

export function registerProbes(app: FastifyInstance, opts: ProbeOptions): void {
  const timeoutMs = opts.checkTimeoutMs ?? 3_000;
  app.get("/api/healthz", { schema: probeSchemas.healthz }, async () => ({ status: "ok" }));
  app.get("/api/version", { schema: probeSchemas.version }, async () => opts.build);
  app.get("/api/ready", { schema: probeSchemas.ready }, async (_req, reply) => {
    const results = await runReadyChecks(opts.ready ?? {}, timeoutMs);
    const failing = Object.entries(results)
      .filter(([, r]) => !r.ok)
      .map(([name]) => name);
    if (failing.length === 0) return { status: "ready", checks: results };
    return reply.code(503).send({
      status: "not_ready",
      error: `not ready: ${failing.join(", ")} failing`,
      code: "NOT_READY",
      failing,
      checks: results,
    });
  });
}

/** Runs every check side by side; each ends ok, with its error, or timed out. */
export async function runReadyChecks(
  checks: ReadyChecks,
  timeoutMs: number,
): Promise<Record<string, { ok: boolean; error?: string; detail?: string }>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const detail = await Promise.race([
          check(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        return [name, typeof detail === "string" ? { ok: true, detail } : { ok: true }] as const;
      } catch (err) {
        return [name, { ok: false, error: err instanceof Error ? err.message : String(err) }] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}

/** The running build as `/api/version` reports it. */
export function buildInfo(version: string, extra: Partial<Omit<BuildInfo, "version">> = {}): BuildInfo {
  const info: BuildInfo = {
    version,
    // A packed platform release's own stamp wins over the build's (they agree when both exist).
    commit: extra.commit ?? releaseStamp.commit ?? buildStamp.commit,
    built_at: extra.built_at ?? releaseStamp.built_at ?? buildStamp.built_at,
  };
  if (extra.release !== undefined) info.release = extra.release;
  return info;
}
