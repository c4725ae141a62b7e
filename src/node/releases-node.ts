import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { parse } from "smol-toml";
import { environmentUuid } from "../core/address.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { isUuid } from "../core/uuid.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { BuiltImage } from "../pipeline/deps.js";
import type { DeployRecord, RegistryAccess } from "../pipeline/executor.js";
import { declarationsOfRelease, declarationsOfToml } from "../pipeline/release-declarations.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import { ROSTER_TENANT } from "./apps-node.js";
import type { AppRegistry, Caller } from "./apps-registry.js";
import type { App } from "./apps-schema.js";
import type { AuditLog } from "./audit-log.js";
import type { NodePipeline } from "./pipeline.js";
import { releaseImage } from "./release-signatures.js";
import type { DeployLock } from "./releases-lock.js";
import { pushReleaseArtifact } from "./releases-oci.js";
import { environmentTargets, runRollout } from "./releases-rollout.js";
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
 *   POST /api/v1/apps/:app/rollback    {env?, to?, migrate?} → 200 {release, environment, targets}
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

export async function attachReleases(app: FastifyInstance, ctx: ReleasesContext): Promise<AttachedReleases> {
  const releases = new ReleaseStore(ctx.store, ctx.audit);
  const lock = ctx.pipeline.lock;
  // Deploys this node lost when it died were closed as failed when the pipeline opened; their
  // locks go now, and nothing they half-rolled is rolled back behind anyone's back.
  for (const freed of await lock.sweep()) {
    await ctx.audit.record({
      actor: "system",
      action: "deploy.interrupted",
      subject: `app:${freed.app_uuid}`,
      after: { environment: freed.environment, deploy_id: freed.deploy_id, holder: freed.holder },
    });
    ctx.logger.warn("deploy lock of an interrupted deploy released", freed);
  }
  ctx.pipeline.useAudit(ctx.audit);
  ctx.pipeline.useReleases({
    register: async (built) => {
      const release = await registerBuilt(releases, built);
      // Signed before any target gets the image: what a later rollout of it checks.
      await publishRelease(ctx, built.tenant, built.app_uuid, release);
      return { id: release.id, manifest: release.manifest };
    },
  });
  ctx.pipeline.onDeployEnded((record) => recordImageRelease(ctx, releases, record));

  app.register(async (untyped) => {
    // Handlers take their params, query and body types from the route schemas.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    const callerOf = new WeakMap<FastifyRequest, Caller>();
    scope.addHook("onRequest", async (req) => {
      callerOf.set(req, await ctx.callers.resolve(req.headers.authorization));
    });

    scope.get("/api/v1/apps/:app/releases", { schema: listReleasesSchema }, async (req) => {
      const target = await ctx.registry.get(callerOf.get(req) as Caller, req.params.app);
      return { app: target.name, uuid: target.uuid, releases: await releases.list(target.uuid) };
    });

    scope.post("/api/v1/apps/:app/releases", { schema: recordReleaseSchema }, async (req, reply) => {
      const caller = callerOf.get(req) as Caller;
      const body = objectBody(req.body);
      const target = await appOnFirstSight(ctx, caller, req.params.app, body);
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
      const declarations = declarationsOfToml(manifestToml);
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
          runtime: pushedRuntime(manifestToml),
          ...(Object.keys(declarations).length > 0 ? { deploy: declarations } : {}),
        },
        created_by: caller.actor,
      });
      await publishRelease(ctx, target.tenant, target.uuid, release);
      const rollout = await rollPushed(ctx, releases, target, release, caller.actor, waits(req));
      return reply.code(created ? 201 : 200).send({ ...release, rollout });
    });

    scope.post("/api/v1/apps/:app/rollback", { schema: rollbackSchema }, async (req) => {
      const caller = callerOf.get(req) as Caller;
      const target = await ctx.registry.get(caller, req.params.app);
      const body = objectBody(req.body ?? {});
      const env = body.env ?? DEFAULT_ENVIRONMENT;
      if (typeof env !== "string" || env === "") throw new TabbifyError("BAD_REQUEST", "env must be a name");
      environmentUuid(target.uuid, env);
      if (body.to !== undefined && (typeof body.to !== "string" || body.to === "")) {
        throw new TabbifyError("BAD_REQUEST", "to must be a release id or digest");
      }
      if (body.migrate !== undefined && typeof body.migrate !== "boolean") {
        throw new TabbifyError("BAD_REQUEST", "migrate must be true or false");
      }
      const history = await releases.history(target.uuid, env);
      const to = typeof body.to === "string" ? await releases.find(target.uuid, body.to) : history.previous;
      if (!to) {
        throw new TabbifyError(
          "RELEASE_NOT_FOUND",
          `${env} of ${target.name} ran no earlier release to go back to`,
        );
      }
      const outcome = await runRollout(ctx, {
        kind: "rollback",
        app: target,
        release: to,
        environment: env,
        actor: caller.actor,
        wait: waits(req),
        migrate: body.migrate === true,
      });
      await releases.markRunning(to, env, caller.actor, "release.rollback", {
        from: history.current?.id ?? null,
        deploy_id: outcome.deploy_id,
      });
      return {
        app: target.name,
        environment: env,
        release: to,
        from: history.current?.id ?? null,
        ...outcome,
      };
    });

    scope.post("/api/v1/apps/:app/promote", { schema: promoteSchema }, async (req) => {
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
      const outcome = await runRollout(ctx, {
        kind: "promote",
        app: target,
        release,
        environment: to,
        actor: caller.actor,
        wait: waits(req),
      });
      await releases.markRunning(release, to, caller.actor, "release.promote", {
        from,
        deploy_id: outcome.deploy_id,
      });
      return {
        app: target.name,
        environment: to,
        uuid: environmentUuid(target.uuid, to),
        from,
        release,
        ...outcome,
      };
    });
  });
  return { releases, lock };
}

/**
 * The app a pushed version belongs to. A push names it by the uuid tcli gave it; an app the node
 * has not seen yet is created under the caller's tenant (the node key's: `tenant` in the body,
 * else the default one), named after the manifest.
 */
async function appOnFirstSight(
  ctx: ReleasesContext,
  caller: Caller,
  ref: string,
  body: Record<string, unknown>,
): Promise<App> {
  try {
    return await ctx.registry.get(caller, ref);
  } catch (err) {
    if (!isTabbifyError(err, "APP_NOT_FOUND") || !isUuid(ref)) throw err;
  }
  if (body.name !== undefined && (typeof body.name !== "string" || body.name === "")) {
    throw new TabbifyError("BAD_REQUEST", "name must be the app's name");
  }
  if (caller.tenant === undefined && body.tenant !== undefined && typeof body.tenant !== "string") {
    throw new TabbifyError("BAD_REQUEST", "tenant must be a tenant name");
  }
  const tenant = caller.tenant ?? (body.tenant as string | undefined) ?? ROSTER_TENANT;
  const seen: { uuid: string; tenant: string; name?: string } = { uuid: ref.toLowerCase(), tenant };
  if (typeof body.name === "string") seen.name = body.name;
  await ctx.registry.ensure(caller.actor, seen);
  // Read back as the caller sees it: an app of another tenant under that uuid stays invisible.
  return ctx.registry.get(caller, ref);
}

/**
 * Rolls a newly pushed release to the app's first environment (its declared first, else prod),
 * waiting its turn in the deploy lock. Nothing to roll it to (no supervisor declared, none ran
 * the app, none able) leaves it recorded only, as before. A failed rollout is reported, not
 * thrown: the release exists either way, and the old one keeps serving.
 */
async function rollPushed(
  ctx: ReleasesContext,
  releases: ReleaseStore,
  app: App,
  release: Release,
  actor: string,
  wait: boolean,
): Promise<{ environment: string; state: "skipped" | "succeeded" | "failed" } & Record<string, unknown>> {
  const environment = declarationsOfRelease(release.manifest).environments?.[0]?.name ?? DEFAULT_ENVIRONMENT;
  const targets = await environmentTargets(ctx, app, release, environment);
  if (targets.length === 0) return { environment, state: "skipped", reason: "no supervisor to run it on" };
  try {
    const outcome = await runRollout(ctx, { kind: "deploy", app, release, environment, actor, wait });
    await releases.markRunning(release, environment, actor, "release.deploy", {
      deploy_id: outcome.deploy_id,
    });
    return { environment, state: "succeeded", ...outcome };
  } catch (err) {
    if (isTabbifyError(err, "DEPLOY_LOCKED")) throw err;
    return {
      environment,
      state: "failed",
      code: isTabbifyError(err) ? err.code : "INTERNAL",
      error: err instanceof Error ? err.message : String(err),
    };
  }
}

/** `[runtime] type` of a pushed manifest.toml (the supervisor tag it needs), default process. */
function pushedRuntime(manifestToml: string): string {
  const runtime = (parse(manifestToml) as { runtime?: { type?: unknown } }).runtime;
  const type = typeof runtime?.type === "string" ? runtime.type : "process";
  return type === "wasm-http" ? "wasm" : type;
}

/** `?wait=false`: refuse DEPLOY_LOCKED rather than queue behind the environment's rollout. */
function waits(req: FastifyRequest): boolean {
  return (req.query as { wait?: unknown } | undefined)?.wait !== "false";
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TabbifyError("BAD_REQUEST", "the body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** The release of a built image, with the manifest the builder's facts make; existing if known. */
async function registerBuilt(releases: ReleaseStore, built: BuiltImage): Promise<Release> {
  const source = { repo_url: built.repo_url, commit_sha: built.commit_sha };
  const { release } = await releases.record({
    app: built.app_uuid,
    digest: built.digest,
    source,
    manifest: {
      app: built.app_uuid,
      digest: built.digest,
      image: built.image,
      source,
      build: { builder: built.builder, started_at: built.started_at, finished_at: built.finished_at },
      tabbify_version: nodeVersion,
      ...(built.declarations && Object.keys(built.declarations).length > 0
        ? { deploy: built.declarations }
        : {}),
    },
    created_by: `deploy:${built.deploy_id}`,
  });
  return release;
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
  // The environment the build landed in (its first declared one, else prod).
  const landed = stepData("capability_check", "step_finished")?.data?.environment;
  const environment = typeof landed === "string" ? landed : DEFAULT_ENVIRONMENT;
  // Recorded already by the fan-out (registerBuilt); this finds it, or records it for a pipeline
  // that ran without a registrar.
  const release = await registerBuilt(releases, {
    app_uuid: record.app_uuid,
    tenant: record.request.tenant,
    image: `${repository}@${record.digest}`,
    digest: record.digest,
    repo_url: record.request.repoUrl,
    commit_sha: commitSha,
    builder: String(stepData("pick_builder", "step_finished")?.data?.builder ?? "unknown"),
    started_at: stepData("build_and_push", "step_started")?.ts ?? record.created_at,
    finished_at: built?.ts ?? record.finished_at ?? record.created_at,
    deploy_id: record.id,
  });
  await releases.markRunning(release, environment, "system", "release.deploy", { deploy_id: record.id });
  ctx.logger.info("release recorded", { release: release.id, digest: release.digest });
}

/**
 * Pushes the release manifest to the registry (a referrer of the image, or tagged for a pushed
 * release), signed with the tenant's build key when the node signs (it does with a registry):
 * a rollout into a `require` environment checks that signature (rollout-signature.ts). Again for
 * a known release is a no-op. Throws when it cannot: the caller does not roll an unsigned release.
 */
async function publishRelease(
  ctx: ReleasesContext,
  tenant: string,
  appUuid: string,
  release: Release,
): Promise<void> {
  const signatures = ctx.pipeline.signatures;
  if (signatures) {
    const signed = await signatures.signRelease(tenant, appUuid, release);
    ctx.logger.info("release manifest signed", { release: release.id, ...signed });
    return;
  }
  const access = ctx.registryAccess;
  if (!access || releaseImage(release) === undefined) return;
  await pushReleaseArtifact(
    {
      registryUrl: `http://${access.host}`,
      repository: `${tenant.toLowerCase()}/${appUuid.toLowerCase()}`,
      imageDigest: release.digest,
      token: await access.pushToken(tenant, appUuid),
    },
    release,
  );
}
