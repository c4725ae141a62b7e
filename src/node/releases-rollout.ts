import { v7 as uuidV7 } from "uuid";
import { deriveAppUla, environmentUuid } from "../core/address.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { HttpSupervisorClient } from "../pipeline/clients.js";
import type { MigrationAudit } from "../pipeline/deps.js";
import type {
  DeployEventType,
  DeployRecord,
  DeployRecordPatch,
  DeployStore,
  RegistryAccess,
  SupervisorDeployRequest,
} from "../pipeline/executor.js";
import { runReleaseMigration } from "../pipeline/migration.js";
import type { StepName, TargetResult } from "../pipeline/plan.js";
import { declarationsOfRelease, declaredProbes } from "../pipeline/release-declarations.js";
import type { Store } from "../store/index.js";
import type { App } from "./apps-schema.js";
import type { NodePipeline } from "./pipeline.js";
import type { Release } from "./releases-store.js";
import { rolloutSignatureCheck } from "./rollout-signature.js";

/**
 * A rollback or a promotion as a deploy record, like a build's: `acquire_lock` (queued behind the
 * environment's running rollout, or DEPLOY_LOCKED without waiting), `verify_signature` (the
 * release's image against the tenant's trusted keys, under the policy of the environment it goes
 * to), `fan_out` (each target swaps to the release's image, pinned by digest: the supervisor's
 * zero-downtime swap) and `verify` (each runner reports that digest). `GET /v1/deploy/<id>/status|events` and the app's progress
 * show it as they show a build.
 */

export interface RolloutDeps {
  store: Store;
  pipeline: NodePipeline;
  coordinator: RosterCoordinator;
  registryAccess?: RegistryAccess;
  supervisorKey?: string;
  /** Where migrations are audited (the node's audit chain). */
  audit?: MigrationAudit;
}

export interface RolloutInput {
  /** `deploy`: a pushed release rolled to its first environment. */
  kind: "rollback" | "promote" | "deploy";
  app: App;
  release: Release;
  environment: string;
  actor: string;
  /** False: fail DEPLOY_LOCKED at once when another rollout of the environment holds the lock. */
  wait: boolean;
  /** A rollback runs the release's `[deploy] migrate` only when asked (`tcli rollback --migrate`). */
  migrate?: boolean;
}

export interface RolloutOutcome {
  deploy_id: string;
  targets: TargetResult[];
  queued_ms: number;
  duration_ms: number;
}

/** Appends a record's events in order, each with the next seq. */
class RecordWriter {
  #seq = 0;
  constructor(
    readonly store: DeployStore,
    readonly id: string,
  ) {}

  async emit(
    step: StepName | "deploy",
    type: DeployEventType,
    message?: string,
    data?: Record<string, unknown>,
    patch?: DeployRecordPatch,
  ): Promise<void> {
    this.#seq++;
    const event = { seq: this.#seq, ts: new Date().toISOString(), deploy_id: this.id, step, type };
    await this.store.append(
      { ...event, ...(message !== undefined ? { message } : {}), ...(data ? { data } : {}) },
      patch,
    );
  }
}

/** Runs the rollout to its end; throws (after recording it) when it failed or was refused. */
export async function runRollout(deps: RolloutDeps, input: RolloutInput): Promise<RolloutOutcome> {
  const { app, release, environment } = input;
  const image = rolledRef(release);
  // Refused without waiting: answered before any record, so a busy environment's history only
  // holds rollouts that ran.
  if (!input.wait) await deps.pipeline.lock.assertFree(app.uuid, environment);
  const id = uuidV7();
  const store = deps.pipeline.store;
  const record: DeployRecord = {
    id,
    status: "running",
    request: {
      trigger: input.kind === "deploy" ? "push" : input.kind,
      repoUrl: app.repo_url ?? "",
      ref: release.digest,
      tenant: app.tenant,
      appUuid: app.uuid,
    },
    created_at: new Date().toISOString(),
    app_uuid: app.uuid,
    image_ref: image,
    digest: release.digest,
    results: [],
    events: [],
  };
  await store.create(record);
  const writer = new RecordWriter(store, id);
  const lock = deps.pipeline.lock;
  const started = performance.now();
  let step: StepName = "acquire_lock";
  let stepStarted = performance.now();
  const begin = async (name: StepName) => {
    step = name;
    stepStarted = performance.now();
    await writer.emit(name, "step_started");
  };
  const finish = (message: string, data: Record<string, unknown> = {}) =>
    writer.emit(step, "step_finished", message, {
      ...data,
      duration_ms: Math.round(performance.now() - stepStarted),
    });
  let queued_ms = 0;
  let holding = false;
  let pending = Promise.resolve();
  try {
    await begin("acquire_lock");
    ({ queued_ms } = await lock.acquire(
      app.uuid,
      environment,
      id,
      `${input.kind === "rollback" ? "rollback" : input.kind === "promote" ? "promotion" : "push"} by ${input.actor} (deploy ${id})`,
      {
        wait: input.wait,
        onQueued: async (held) => {
          await writer.emit("acquire_lock", "log", `queued behind ${held.holder}`, undefined, {
            status: "queued",
          });
        },
      },
    ));
    holding = true;
    await store.update(id, { status: "running" });
    await finish(`holds the deploy lock of ${environment}`, { environment, queued_ms });

    await begin("verify_signature");
    const signature = await rolloutSignatureCheck(
      deps.pipeline.signatures,
      app,
      release,
      environment,
      (line) => writer.emit("verify_signature", "log", line),
    );
    await finish(signature.message, signature.data);
    await begin("migrate");
    const migrated = await migrateGate(deps, input, id, (line) => {
      pending = pending.then(() => writer.emit("migrate", "log", line));
    }).finally(() => pending);
    await finish(migrated.message, migrated.data);

    await begin("fan_out");
    const results = await fanOut(deps, app, release, environment);
    await store.update(id, { results });
    await finish(
      `${results.filter((r) => r.success).length} of ${results.length} targets took ${release.digest}`,
    );

    await begin("verify");
    const verified = await verify(deps, app, release, environment, results);
    const failed = verified.filter((r) => !r.success);
    if (failed.length > 0 || verified.length === 0) {
      throw new TabbifyError(
        "ROLLOUT_FAILED",
        `${input.kind} of ${release.id} to ${environment} failed on ${failed.map((t) => `${t.supervisor} (${t.error})`).join(", ") || "every target: none known"}`,
      );
    }
    await finish(`${verified.length} targets run ${release.digest}`);
    const duration_ms = Math.round(performance.now() - started);
    await writer.emit(
      "deploy",
      "deploy_finished",
      `${environment} runs release ${release.id}`,
      { results: verified, duration_ms, queued_ms },
      { status: "succeeded", finished_at: new Date().toISOString(), results: verified },
    );
    return { deploy_id: id, targets: verified, queued_ms, duration_ms };
  } catch (err) {
    const code = isTabbifyError(err) ? err.code : "INTERNAL";
    const message = err instanceof Error ? err.message : String(err);
    await writer.emit(step, "step_failed", message, { code });
    await writer.emit(
      "deploy",
      "deploy_failed",
      message,
      { code, step },
      { status: "failed", finished_at: new Date().toISOString(), error: { code, message, step } },
    );
    throw err;
  } finally {
    if (holding) await lock.release(app.uuid, environment, id);
  }
}

/**
 * What a release rolls as: its digest-pinned image, or `v<N>` of the artifact store for a pushed
 * release. Anything else is REF_NOT_PINNED: no environment is ever handed a tag.
 */
export function rolledRef(release: Release): string {
  const image = release.manifest.image;
  if (typeof image === "string" && /@sha256:[0-9a-f]{64}$/.test(image)) return image;
  const version = (release.source as { artifact_version?: unknown }).artifact_version;
  if (image == null && typeof version === "string" && /^v[1-9][0-9]{0,8}$/.test(version)) return version;
  throw new TabbifyError(
    "REF_NOT_PINNED",
    `release ${release.id} has no pinned image or version to roll out`,
  );
}

const isArtifact = (ref: string) => !ref.includes("@");

/**
 * The supervisors an environment runs on: those the release declares for it (`[[environments]]`),
 * else those the app's last successful rollout reached, else the first roster supervisor able to
 * run it (docker for an image, the pushed manifest's runtime for an artifact).
 */
export async function environmentTargets(
  deps: RolloutDeps,
  app: App,
  release: Release,
  environment: string,
): Promise<TargetResult[]> {
  const ref = rolledRef(release);
  const runtime = isArtifact(ref) ? String(release.manifest.runtime ?? "process") : "docker";
  const blank = (supervisor: string): TargetResult => ({
    supervisor,
    runtime: runtime as TargetResult["runtime"],
    success: false,
    app_ula: deriveAppUla(environmentUuid(app.uuid, environment)),
  });
  const declared = declarationsOfRelease(release.manifest).environments;
  const named = declared?.find((e) => e.name === environment);
  if (named) return named.targets.map(blank);
  if (declared && declared.length > 0) {
    throw new TabbifyError(
      "ENVIRONMENT_UNKNOWN",
      `release ${release.id} declares no environment ${environment} (it has ${declared.map((e) => e.name).join(", ")})`,
    );
  }
  const previous = await targetsOf(deps, app.uuid);
  if (previous.length > 0) return previous;
  const able = deps.coordinator
    .supervisors()
    .filter((s) => s.tags.includes(runtime))
    .sort((a, b) => a.name.localeCompare(b.name))[0];
  return able ? [blank(able.name)] : [];
}

/**
 * The supervisors the environment runs on: those the app's last successful rollout reached (its
 * build, or a rollback or promotion since).
 */
async function targetsOf(deps: RolloutDeps, appUuid: string): Promise<TargetResult[]> {
  const rows = await deps.store.db
    .selectFrom("deploys")
    .select("id")
    .where("app_uuid", "=", appUuid)
    .where("status", "=", "succeeded")
    .orderBy("created_at", "desc")
    .limit(5)
    .execute();
  for (const row of rows) {
    const ok = (await deps.pipeline.store.get(row.id))?.results.filter((r) => r.success) ?? [];
    if (ok.length > 0) return ok;
  }
  return [];
}

function supervisorClient(deps: RolloutDeps, name: string): HttpSupervisorClient | undefined {
  const supervisor = deps.coordinator.supervisors().find((s) => s.name === name);
  if (!supervisor) return undefined;
  return new HttpSupervisorClient({
    baseUrl: supervisor.address,
    ...(deps.supervisorKey ? { authToken: deps.supervisorKey } : {}),
  });
}

async function fanOut(
  deps: RolloutDeps,
  app: App,
  release: Release,
  environment: string,
): Promise<TargetResult[]> {
  const runAs = environmentUuid(app.uuid, environment);
  const ref = rolledRef(release);
  const artifact = isArtifact(ref);
  const pullToken = artifact ? undefined : await deps.registryAccess?.pullToken?.(app.tenant, app.uuid);
  const targets = await environmentTargets(deps, app, release, environment);
  if (targets.length === 0) {
    throw new TabbifyError("TARGETS_UNRESOLVABLE", `no supervisor to run ${environment} of this app on`);
  }
  return Promise.all(
    targets.map(async (t): Promise<TargetResult> => {
      const result: TargetResult = { ...t, success: false, digest: release.digest };
      delete result.error;
      const client = supervisorClient(deps, t.supervisor);
      if (!client) return { ...result, error: "not on the roster" };
      const body = rolloutBody(app, release, environment, t, pullToken);
      try {
        await client.deploy(runAs, body);
        return { ...result, success: true };
      } catch (err) {
        return { ...result, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}

/** What a target is handed to run the release (the migration gate hands the first the same). */
function rolloutBody(
  app: App,
  release: Release,
  environment: string,
  target: TargetResult,
  pullToken: string | undefined,
): SupervisorDeployRequest {
  const ref = rolledRef(release);
  const body: SupervisorDeployRequest = isArtifact(ref)
    ? { artifact_version: ref, artifact_app: app.uuid, environment }
    : { ref, digest: release.digest, runtime: target.runtime, environment };
  if (pullToken !== undefined) body.registry_token = pullToken;
  const probes = declaredProbes(declarationsOfRelease(release.manifest), release, release.digest);
  if (probes) body.probes = probes;
  body.release = { id: release.id, manifest: release.manifest };
  return body;
}

/**
 * The release's `[deploy] migrate`, once, on the environment's first target, before fan_out
 * switches any (../pipeline/migration.ts). A rollback skips it unless `migrate` is asked for:
 * going back to a release usually must not re-run its forward migration.
 */
async function migrateGate(
  deps: RolloutDeps,
  input: RolloutInput,
  deployId: string,
  log: (line: string) => void,
): Promise<{ message: string; data?: Record<string, unknown> }> {
  const { app, release, environment } = input;
  const command = declarationsOfRelease(release.manifest).migrate;
  if (!command) return { message: "no [deploy] migrate declared" };
  if (input.kind === "rollback" && !input.migrate) {
    return { message: "skipped on rollback (--migrate runs it)", data: { skipped: true } };
  }
  const targets = await environmentTargets(deps, app, release, environment);
  const first = targets[0];
  if (!first)
    throw new TabbifyError("TARGETS_UNRESOLVABLE", `no supervisor to run ${environment} of this app on`);
  const client = supervisorClient(deps, first.supervisor);
  if (!client) throw new TabbifyError("MIGRATION_FAILED", `${first.supervisor} is not on the roster`);
  const ref = rolledRef(release);
  const pullToken = isArtifact(ref)
    ? undefined
    : await deps.registryAccess?.pullToken?.(app.tenant, app.uuid);
  const body = rolloutBody(app, release, environment, first, pullToken);
  return runReleaseMigration(
    client,
    first.supervisor,
    environmentUuid(app.uuid, environment),
    body,
    command,
    log,
    deps.audit && {
      log: deps.audit,
      subject: {
        deployId,
        actor: input.actor,
        appUuid: app.uuid,
        environment,
        digest: release.digest,
        release: release.id,
      },
    },
  );
}

async function verify(
  deps: RolloutDeps,
  app: App,
  release: Release,
  environment: string,
  results: TargetResult[],
): Promise<TargetResult[]> {
  const runAs = environmentUuid(app.uuid, environment);
  return Promise.all(
    results.map(async (r): Promise<TargetResult> => {
      if (!r.success) return r;
      try {
        const status = await supervisorClient(deps, r.supervisor)?.app(runAs);
        const ref = rolledRef(release);
        const runs = isArtifact(ref) ? status?.artifact_version : status?.digest;
        const expected = isArtifact(ref) ? ref : release.digest;
        if (runs !== expected) {
          return { ...r, success: false, error: `runner runs ${runs ?? "nothing"}, expected ${expected}` };
        }
        return r;
      } catch (err) {
        return { ...r, success: false, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}
