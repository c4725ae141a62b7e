import type { FastifyInstance, FastifyRequest } from "fastify";
import { environmentUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { HttpSupervisorClient } from "../pipeline/clients.js";
import type { DeployRecord, RegistryAccess, SupervisorDeployRequest } from "../pipeline/executor.js";
import type { TargetResult } from "../pipeline/plan.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AppRegistry, Caller } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import type { NodePipeline } from "./pipeline.js";
import { DeployLock } from "./releases-lock.js";
import { pushReleaseArtifact } from "./releases-oci.js";
import { artifactContentDigest, DEFAULT_ENVIRONMENT, type Release, ReleaseStore } from "./releases-store.js";
import {
  listReleasesSchema,
  promoteSchema,
  recordReleaseSchema,
  rollbackSchema,
} from "./schemas/releases.js";
import { nodeVersion } from "./version.js";

/**
 * Releases on the node: every successful image deploy records one (and pushes its manifest to the
 * registry as a referrer of the image), `tcli push` versions are registered through the API, and
 * rollback swaps an environment's targets back to an earlier release by digest, one rollout per
 * (app, environment) at a time.
 *
 *   GET  /api/v1/apps/:app/releases    newest first, each with the environments running it
 *   POST /api/v1/apps/:app/releases    {version, manifest_toml, files: [{path, digest}]} → 201 | 200
 *   POST /api/v1/apps/:app/rollback    {env?, to?} → 200 {release, environment, targets}
 *   POST /api/v1/apps/:app/promote     {from, to, release?} → 200 {release, environment, targets}
 */

export interface ReleasesContext {
  store: Store;
  audit: AuditLog;
  registry: AppRegistry;
  callers: CallerResolver;
  pipeline: NodePipeline;
  coordinator: RosterCoordinator;
  registryAccess?: RegistryAccess;
  supervisorKey?: string;
  logger: Logger;
}

export interface AttachedReleases {
  releases: ReleaseStore;
  lock: DeployLock;
}

export function attachReleases(app: FastifyInstance, ctx: ReleasesContext): AttachedReleases {
  const releases = new ReleaseStore(ctx.store, ctx.audit);
  const lock = new DeployLock(ctx.store);
  ctx.pipeline.onDeployEnded((record) => recordImageRelease(ctx, releases, record));

  app.register(async (scope) => {
    const callerOf = new WeakMap<FastifyRequest, Caller>();
    scope.addHook("onRequest", async (req) => {
      callerOf.set(req, await ctx.callers.resolve(req.headers.authorization));
    });
    type AppReq = FastifyRequest<{ Params: { app: string } }>;

    scope.get("/api/v1/apps/:app/releases", { schema: listReleasesSchema }, async (req: AppReq) => {
      const target = await ctx.registry.get(callerOf.get(req) as Caller, req.params.app);
      return { app: target.name, uuid: target.uuid, releases: await releases.list(target.uuid) };
    });

    scope.post("/api/v1/apps/:app/releases", { schema: recordReleaseSchema }, async (req: AppReq, reply) => {
      const caller = callerOf.get(req) as Caller;
      const target = await ctx.registry.get(caller, req.params.app);
      const body = objectBody(req.body);
      const version = body.version;
      const manifestToml = body.manifest_toml;
      const files = body.files;
      if (
        typeof version !== "string" ||
        version === "" ||
        typeof manifestToml !== "string" ||
        !Array.isArray(files)
      ) {
        throw new TabbifyError(
          "BAD_REQUEST",
          "the body must be {version, manifest_toml, files: [{path, digest}]}",
        );
      }
      const listed = files.map((f) => {
        const file = f as { path?: unknown; digest?: unknown };
        if (typeof file?.path !== "string" || typeof file.digest !== "string") {
          throw new TabbifyError("BAD_REQUEST", "files: each must be {path, digest}");
        }
        return { path: file.path, digest: file.digest };
      });
      const digest = artifactContentDigest(manifestToml, listed);
      const now = new Date().toISOString();
      const { release, created } = await releases.record({
        app: target.uuid,
        digest,
        source: { artifact_version: version },
        manifest: {
          app: target.uuid,
          digest,
          image: null,
          source: { artifact_version: version },
          build: { builder: "tcli push", started_at: now, finished_at: now },
          tabbify_version: nodeVersion,
        },
        created_by: caller.actor,
      });
      return reply.code(created ? 201 : 200).send(release);
    });

    scope.post("/api/v1/apps/:app/rollback", { schema: rollbackSchema }, async (req: AppReq) => {
      const caller = callerOf.get(req) as Caller;
      const target = await ctx.registry.get(caller, req.params.app);
      const body = objectBody(req.body ?? {});
      const env = body.env ?? DEFAULT_ENVIRONMENT;
      if (typeof env !== "string" || env === "") throw new TabbifyError("BAD_REQUEST", "env must be a name");
      if (body.to !== undefined && (typeof body.to !== "string" || body.to === "")) {
        throw new TabbifyError("BAD_REQUEST", "to must be a release id or digest");
      }
      const history = await releases.history(target.uuid, env);
      const to = typeof body.to === "string" ? await releases.find(target.uuid, body.to) : history.previous;
      if (!to) {
        throw new TabbifyError(
          "RELEASE_NOT_FOUND",
          `${env} of ${target.name} ran no earlier release to go back to`,
        );
      }
      const holder = `rollback by ${caller.actor} at ${new Date().toISOString()}`;
      return lock.with(target.uuid, env, holder, async () => {
        const started = performance.now();
        const targets = await rollOut(ctx, target.uuid, target.tenant, to, env);
        const failed = targets.filter((t) => !t.success);
        if (failed.length > 0 || targets.length === 0) {
          throw new TabbifyError(
            "ROLLOUT_FAILED",
            `rollback to ${to.id} failed on ${failed.map((t) => `${t.supervisor} (${t.error})`).join(", ") || "every target: none known"}`,
          );
        }
        await releases.markRunning(to, env, caller.actor, "release.rollback", {
          from: history.current?.id ?? null,
        });
        return {
          app: target.name,
          environment: env,
          release: to,
          from: history.current?.id ?? null,
          targets,
          duration_ms: Math.round(performance.now() - started),
        };
      });
    });
    scope.post("/api/v1/apps/:app/promote", { schema: promoteSchema }, async (req: AppReq) => {
      const caller = callerOf.get(req) as Caller;
      const target = await ctx.registry.get(caller, req.params.app);
      const body = objectBody(req.body ?? {});
      const { from, to } = body;
      if (typeof from !== "string" || typeof to !== "string" || from === to) {
        throw new TabbifyError(
          "BAD_REQUEST",
          "the body must be {from, to, release?} with two different environments",
        );
      }
      environmentUuid(target.uuid, to);
      if (body.release !== undefined && (typeof body.release !== "string" || body.release === "")) {
        throw new TabbifyError("BAD_REQUEST", "release must be a release id or digest");
      }
      // Only what `from` ran (and its rollout verified) may reach `to`: the same digest, pinned.
      const release =
        typeof body.release === "string"
          ? await releases.find(target.uuid, body.release)
          : (await releases.history(target.uuid, from)).current;
      if (!release || !(await releases.ranIn(release, from))) {
        throw new TabbifyError(
          "NOT_VERIFIED_IN",
          `NOT_VERIFIED_IN ${from}: ${release ? `release ${release.id}` : "nothing"} never ran in ${from}`,
        );
      }
      const holder = `promotion by ${caller.actor} at ${new Date().toISOString()}`;
      return lock.with(target.uuid, to, holder, async () => {
        const started = performance.now();
        const targets = await rollOut(ctx, target.uuid, target.tenant, release, to);
        const failed = targets.filter((t) => !t.success);
        if (failed.length > 0 || targets.length === 0) {
          throw new TabbifyError(
            "ROLLOUT_FAILED",
            `promotion of ${release.id} to ${to} failed on ${failed.map((t) => `${t.supervisor} (${t.error})`).join(", ") || "every target: none known"}`,
          );
        }
        await releases.markRunning(release, to, caller.actor, "release.promote", { from });
        return {
          app: target.name,
          environment: to,
          uuid: environmentUuid(target.uuid, to),
          from,
          release,
          targets,
          duration_ms: Math.round(performance.now() - started),
        };
      });
    });
  });
  return { releases, lock };
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TabbifyError("BAD_REQUEST", "the body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** After a successful image deploy: the release, its run in the first environment, its referrer. */
async function recordImageRelease(
  ctx: ReleasesContext,
  releases: ReleaseStore,
  record: DeployRecord,
): Promise<void> {
  if (record.status !== "succeeded" || !record.app_uuid || !record.digest || !record.image_ref) return;
  if (!record.results.some((r) => r.success)) return;
  const stepData = (step: string, type: string) =>
    record.events.find((e) => e.step === step && e.type === type);
  const built = stepData("build_and_push", "step_finished");
  const commitSha = String(built?.data?.commit_sha ?? record.request.sha ?? "");
  const repository = record.image_ref.slice(0, record.image_ref.lastIndexOf(":"));
  const source = { repo_url: record.request.repoUrl, commit_sha: commitSha };
  // The pipeline deploys under the app's own UUID, which is prod's; builds do not target other
  // environments yet.
  const environment = DEFAULT_ENVIRONMENT;
  const { release } = await releases.record({
    app: record.app_uuid,
    digest: record.digest,
    source,
    manifest: {
      app: record.app_uuid,
      digest: record.digest,
      image: `${repository}@${record.digest}`,
      source,
      build: {
        builder: String(stepData("pick_builder", "step_finished")?.data?.builder ?? "unknown"),
        started_at: stepData("build_and_push", "step_started")?.ts ?? record.created_at,
        finished_at: built?.ts ?? record.finished_at ?? record.created_at,
      },
      tabbify_version: nodeVersion,
    },
    created_by: `deploy:${record.id}`,
  });
  await releases.markRunning(release, environment, "system", "release.deploy", { deploy_id: record.id });
  const access = ctx.registryAccess;
  if (!access) return;
  const token = await access.pushToken(record.request.tenant, record.app_uuid);
  const artifact = await pushReleaseArtifact(
    {
      registryUrl: `http://${access.host}`,
      repository: repository.slice(repository.indexOf("/") + 1),
      imageDigest: record.digest,
      token,
    },
    release.manifest,
  );
  ctx.logger.info("release recorded", { release: release.id, digest: release.digest, artifact });
}

/**
 * Swaps every target the app last deployed to over to `release`'s image, pinned by digest, and
 * checks each runner reports that digest. The supervisor's deploy is the same zero-downtime swap a
 * build's fan-out uses.
 */
async function rollOut(
  ctx: ReleasesContext,
  appUuid: string,
  tenant: string,
  release: Release,
  environment: string,
): Promise<TargetResult[]> {
  const runAs = environmentUuid(appUuid, environment);
  const image = release.manifest.image;
  if (typeof image !== "string" || !image.includes("@sha256:")) {
    throw new TabbifyError("REF_NOT_PINNED", `release ${release.id} has no digest-pinned image to roll out`);
  }
  const last = await lastSuccessfulDeploy(ctx, appUuid);
  const targets = last?.results.filter((r) => r.success) ?? [];
  const supervisors = new Map(ctx.coordinator.supervisors().map((s) => [s.name, s]));
  const pullToken = await ctx.registryAccess?.pullToken?.(tenant, appUuid);
  return Promise.all(
    targets.map(async (t): Promise<TargetResult> => {
      const result: TargetResult = { ...t, success: false, digest: release.digest };
      delete result.error;
      const supervisor = supervisors.get(t.supervisor);
      if (!supervisor) return { ...result, error: "not on the roster" };
      const client = new HttpSupervisorClient({
        baseUrl: supervisor.address,
        ...(ctx.supervisorKey ? { authToken: ctx.supervisorKey } : {}),
      });
      const body: SupervisorDeployRequest = { ref: image, digest: release.digest, runtime: t.runtime };
      if (pullToken !== undefined) body.registry_token = pullToken;
      try {
        await client.deploy(runAs, body);
        const status = await client.app(runAs);
        if (status?.digest !== release.digest) {
          return {
            ...result,
            error: `runner runs ${status?.digest ?? "nothing"}, expected ${release.digest}`,
          };
        }
        return { ...result, success: true };
      } catch (err) {
        return { ...result, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}

async function lastSuccessfulDeploy(
  ctx: ReleasesContext,
  appUuid: string,
): Promise<DeployRecord | undefined> {
  const rows = await ctx.store.db
    .selectFrom("deploys")
    .select("id")
    .where("app_uuid", "=", appUuid)
    .where("status", "=", "succeeded")
    .orderBy("created_at", "desc")
    .limit(5)
    .execute();
  for (const row of rows) {
    const record = await ctx.pipeline.store.get(row.id);
    if (record?.results.some((r) => r.success)) return record;
  }
  return undefined;
}
