import { v7 as uuidV7 } from "uuid";
import { environmentUuid } from "../core/address.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { HttpSupervisorClient } from "../pipeline/clients.js";
import type {
  DeployEventType,
  DeployRecord,
  DeployRecordPatch,
  DeployStore,
  RegistryAccess,
  SupervisorDeployRequest,
} from "../pipeline/executor.js";
import type { StepName, TargetResult } from "../pipeline/plan.js";
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
}

export interface RolloutInput {
  kind: "rollback" | "promote";
  app: App;
  release: Release;
  environment: string;
  actor: string;
  /** False: fail DEPLOY_LOCKED at once when another rollout of the environment holds the lock. */
  wait: boolean;
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
  const image = release.manifest.image;
  if (typeof image !== "string" || !/@sha256:[0-9a-f]{64}$/.test(image)) {
    throw new TabbifyError("REF_NOT_PINNED", `release ${release.id} has no digest-pinned image to roll out`);
  }
  // Refused without waiting: answered before any record, so a busy environment's history only
  // holds rollouts that ran.
  if (!input.wait) await deps.pipeline.lock.assertFree(app.uuid, environment);
  const id = uuidV7();
  const store = deps.pipeline.store;
  const record: DeployRecord = {
    id,
    status: "running",
    request: {
      trigger: input.kind,
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
  try {
    await begin("acquire_lock");
    ({ queued_ms } = await lock.acquire(
      app.uuid,
      environment,
      id,
      `${input.kind === "rollback" ? "rollback" : "promotion"} by ${input.actor} (deploy ${id})`,
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

    await begin("fan_out");
    const results = await fanOut(deps, app, release, image, environment);
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
  image: string,
  environment: string,
): Promise<TargetResult[]> {
  const runAs = environmentUuid(app.uuid, environment);
  const pullToken = await deps.registryAccess?.pullToken?.(app.tenant, app.uuid);
  const targets = await targetsOf(deps, app.uuid);
  return Promise.all(
    targets.map(async (t): Promise<TargetResult> => {
      const result: TargetResult = { ...t, success: false, digest: release.digest };
      delete result.error;
      const client = supervisorClient(deps, t.supervisor);
      if (!client) return { ...result, error: "not on the roster" };
      const body: SupervisorDeployRequest = { ref: image, digest: release.digest, runtime: t.runtime };
      if (pullToken !== undefined) body.registry_token = pullToken;
      body.release = { id: release.id, manifest: release.manifest };
      try {
        await client.deploy(runAs, body);
        return { ...result, success: true };
      } catch (err) {
        return { ...result, error: err instanceof Error ? err.message : String(err) };
      }
    }),
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
        if (status?.digest !== release.digest) {
          return {
            ...r,
            success: false,
            error: `runner runs ${status?.digest ?? "nothing"}, expected ${release.digest}`,
          };
        }
        return r;
      } catch (err) {
        return { ...r, success: false, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}
