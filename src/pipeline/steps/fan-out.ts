import { deriveAppUla } from "../../core/address.js";
import type { SupervisorDeployRequest } from "../deps.js";
import { DEFAULT_ENVIRONMENT, type DeployTarget, pinnedRef, type TargetResult } from "../plan.js";
import { declaredProbes } from "../release-declarations.js";
import type { TabbifyManifest } from "../tabbify-toml.js";
import { type DeployState, errorMessage, readRoster, type Step, type StepContext } from "./context.js";

/** Hands the pushed image to every target at once; a target's failure fails only its result. */
export const fanOut: Step = async (state, ctx) => {
  const supervisors = await readRoster(state, ctx);
  const { request } = state.plan;
  const appUuid = state.appUuid!;
  const runAs = state.runAs ?? appUuid;
  const registry = ctx.deps.registry!;
  const { log, flush } = ctx.stepLog("fan_out");
  const release = await registerRelease(state, ctx);
  if (release) log(`release ${release.id}`);
  let pullToken: string | undefined;
  if (registry.pullToken) {
    pullToken = await registry.pullToken(request.tenant, appUuid);
    ctx.rememberSecret(pullToken);
  }
  const results = await Promise.all(
    state.targets!.map(async (target): Promise<TargetResult> => {
      const result: TargetResult = {
        supervisor: target.supervisor,
        runtime: target.runtime,
        success: false,
        app_ula: deriveAppUla(runAs),
        digest: state.digest!,
      };
      const supervisor = supervisors.find((s) => s.name === target.supervisor)!;
      const body = targetDeployBody(state, target, release, pullToken);
      try {
        const reply = await ctx.deps.supervisorClient(supervisor).deploy(runAs, body);
        if (reply.app_ula) result.app_ula = reply.app_ula;
        result.success = true;
        log(`${target.supervisor}: deployed (${reply.state})`);
      } catch (err) {
        result.error = ctx.scrub(errorMessage(err));
        log(`${target.supervisor}: deploy failed: ${result.error}`);
      }
      return result;
    }),
  );
  await flush();
  state.results = results;
  await ctx.deps.store.update(state.plan.id, { results });
  const ok = results.filter((r) => r.success).length;
  return { message: `${ok} of ${results.length} targets accepted the image` };
};

/**
 * The built image as a release (recorded once: the migrate step and fan_out both ask), pinned by
 * digest: what was built is what runs, never a tag that could move. Undefined without a registrar.
 */
export function registerRelease(
  state: DeployState,
  ctx: StepContext,
): Promise<{ id: string; manifest: Record<string, unknown> } | undefined> {
  const { request } = state.plan;
  const declarations = state.manifest?.declarations;
  return (
    ctx.deps.releases?.register({
      app_uuid: state.appUuid!,
      tenant: request.tenant,
      image: pinnedRef(state.imageRef!, state.digest!),
      digest: state.digest!,
      repo_url: request.repoUrl,
      commit_sha: state.commitSha ?? request.sha ?? "",
      builder: state.builder?.name ?? "unknown",
      started_at: state.buildStartedAt ?? new Date().toISOString(),
      finished_at: state.buildFinishedAt ?? new Date().toISOString(),
      deploy_id: state.plan.id,
      ...(declarations ? { declarations } : {}),
    }) ?? Promise.resolve(undefined)
  );
}

/** What a target is handed to run the built image (the migrate step hands the first the same). */
export function targetDeployBody(
  state: DeployState,
  target: DeployTarget,
  release: { id: string; manifest: Record<string, unknown> } | undefined,
  pullToken: string | undefined,
): SupervisorDeployRequest {
  const body: SupervisorDeployRequest = {
    ref: pinnedRef(state.imageRef!, state.digest!),
    digest: state.digest!,
    runtime: target.runtime,
    env: target.env,
    manifest_toml: state.manifestToml!,
    environment: state.environment ?? DEFAULT_ENVIRONMENT,
  };
  const probes = declaredProbes(state.manifest?.declarations, release, state.digest!);
  if (probes) body.probes = probes;
  if (pullToken !== undefined) body.registry_token = pullToken;
  Object.assign(body, runtimeFields(state.manifest));
  if (release) body.release = release;
  return body;
}

/** tabbify.toml's [runtime] keys as the supervisor's deploy fields (its spec.ts reads them). */
function runtimeFields(manifest: TabbifyManifest | undefined): Partial<SupervisorDeployRequest> {
  if (!manifest) return {};
  const { runtime } = manifest;
  const fields: Partial<SupervisorDeployRequest> = {
    limits: { memory_mb: runtime.memoryMb, ...(runtime.vcpus ? { vcpus: runtime.vcpus } : {}) },
    lifecycle: { mode: runtime.lifecycle, idle_timeout_sec: runtime.idleTimeoutSec },
  };
  if (runtime.stateful) {
    fields.stateful = true;
    if (runtime.dataMount !== undefined) fields.data_mount = runtime.dataMount;
  }
  return fields;
}
