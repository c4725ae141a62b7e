import { unlink } from "node:fs/promises";
import { isErrno, TabbifyError } from "../core/errors.js";
import { type ControlReply, controlRequest, type HealthReply, workloadPidPath } from "../runner/control.js";
import { unconfine } from "../runner/egress-nft.js";
import type { WorkloadSpec } from "../runtimes/runtime.js";
import { checkDataKept, purgeAppData } from "./app-data.js";
import { versionLabel } from "./app-store.js";
import { restartStatus } from "./backoff.js";
import { logPath, type SupervisorContext } from "./context.js";
import { dropKernelHop } from "./kernel-hop-records.js";
import { coldSpawn, forRunner, keepStaged, retireRunner, startResult } from "./launch.js";
import { healthOf, prove } from "./proof.js";
import { freshRestartState, type RunnerRecord } from "./records.js";
import { removeShippedImages, tailLog } from "./spawn.js";
import type { StartOptions, StartResult } from "./supervisor.js";

/**
 * What the API does to one app: start, deploy (a swap onto a live runner, else a cold spawn),
 * stop and purge. Each runs under the app's lock, which the Supervisor takes before calling in.
 */

export async function mustRead(ctx: SupervisorContext, uuid: string): Promise<RunnerRecord> {
  const record = await ctx.records.read(uuid);
  if (!record)
    throw new TabbifyError("APP_NOT_FOUND", `no app ${uuid} on this supervisor`, { uuid, present: false });
  return record;
}

/** Supervisor.start's work once the uuid is parsed and the app's lock held. */
export async function startApp(
  ctx: SupervisorContext,
  uuid: string,
  spec: WorkloadSpec | undefined,
  opts: StartOptions,
): Promise<StartResult & { swapped?: boolean }> {
  const record = await ctx.records.read(uuid);
  let live: HealthReply | undefined;
  if (record && !record.stopped && record.pid !== null) {
    // A living runner is left alone even while its workload restarts: it heals itself.
    const proof = await prove(record);
    if (proof.kind === "ours") live = proof.health;
  }
  if (record && live && !opts.refresh) return startResult(record, live);
  if (spec) checkDataKept(record?.spec, spec);
  const fromRecord = !opts.refresh && record !== undefined && record.artifact_version === undefined;
  if (spec || fromRecord || !ctx.opts.apps) {
    const chosen = spec ?? record?.spec;
    if (!chosen) {
      throw new TabbifyError(
        "SPEC_INVALID",
        `app ${uuid} has no record here and no artifact store is configured; the body needs a runtime and its artifact`,
      );
    }
    await preflight(ctx, chosen);
    if (record?.pid) await retireRunner(ctx, record);
    return coldSpawn(ctx, uuid, chosen);
  }
  const apps = ctx.opts.apps;
  const version = await apps.latest(uuid);
  if (record && live) {
    if (record.artifact_version === versionLabel(version))
      return { ...startResult(record, live), swapped: false };
    const fetched = await apps.fetch(uuid, version);
    checkDataKept(record.spec, fetched.spec);
    await preflight(ctx, fetched.spec);
    const swapped = await swap(ctx, record, { ...fetched.spec, appUuid: uuid }, fetched.label);
    await pruneCache(ctx, uuid, version);
    return swapped;
  }
  const fetched = await apps.fetch(uuid, version);
  checkDataKept(record?.spec, fetched.spec);
  await preflight(ctx, fetched.spec);
  if (record?.pid) await retireRunner(ctx, record);
  const started = await coldSpawn(ctx, uuid, fetched.spec, fetched.label);
  await pruneCache(ctx, uuid, version);
  return opts.refresh ? { ...started, swapped: false } : started;
}

/** Supervisor.deploy's work once the uuid is parsed and the app's lock held. */
export async function deployApp(
  ctx: SupervisorContext,
  uuid: string,
  spec: WorkloadSpec,
  /** `v<N>` when the spec is an artifact store version's (a pushed release rolled by the node). */
  artifactVersion?: string,
): Promise<StartResult & { swapped: boolean }> {
  await preflight(ctx, spec);
  const full = { ...spec, appUuid: uuid };
  const record = await ctx.records.read(uuid);
  checkDataKept(record?.spec, full);
  if (record && !record.stopped && record.pid !== null) {
    const proof = await prove(record);
    if (proof.kind === "ours") return swap(ctx, record, full, artifactVersion);
  }
  if (record?.pid) await retireRunner(ctx, record);
  return { ...(await coldSpawn(ctx, uuid, full, artifactVersion)), swapped: false };
}

/**
 * `POST /v1/apps/:uuid/restart`: the runner's zero-downtime swap onto the release it already
 * runs (a fresh workload; the old one serves until the new one is healthy). A stopped app or one
 * without a live runner is APP_NOT_RUNNING: `start` is what brings it back.
 */
export async function restartApp(
  ctx: SupervisorContext,
  uuid: string,
): Promise<StartResult & { swapped: true }> {
  const record = await mustRead(ctx, uuid);
  const proof = !record.stopped && record.pid !== null ? await prove(record) : undefined;
  if (proof?.kind !== "ours") {
    throw new TabbifyError("APP_NOT_RUNNING", `app ${uuid} is not running here: start it instead`);
  }
  await preflight(ctx, record.spec);
  return swap(ctx, record, { ...record.spec, appUuid: uuid }, record.artifact_version);
}

export async function stopApp(ctx: SupervisorContext, uuid: string): Promise<{ state: "stopped" }> {
  const record = await mustRead(ctx, uuid);
  if (record.pid !== null) await retireRunner(ctx, record);
  await dropKernelHop(ctx, record);
  record.pid = null;
  record.workload_pid = null;
  record.stopped = true;
  await ctx.records.write(record);
  // A stopped app no longer claims its address, so another host may start it and take it over.
  if (record.mesh === "ula") await ctx.opts.addresses.remove(record.app_ula).catch(() => {});
  return { state: "stopped" as const };
}

export async function purgeApp(
  ctx: SupervisorContext,
  uuid: string,
): Promise<{ state: "purged"; uuid: string }> {
  const record = await mustRead(ctx, uuid);
  if (record.pid !== null) await retireRunner(ctx, record);
  await dropKernelHop(ctx, record);
  await ctx.records.remove(uuid);
  await ctx.opts.appUsers?.purge(uuid);
  const log = logPath(ctx, uuid);
  const files = [record.control_sock, workloadPidPath(record.control_sock), log, `${log}.1`];
  for (const file of files) {
    await unlink(file).catch((err: unknown) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });
  }
  if (record.mesh === "ula") await ctx.opts.addresses.remove(record.app_ula);
  await ctx.opts.apps?.purge(uuid);
  await purgeAppData(ctx.opts.dataDir, uuid);
  if (record.spec.runtime === "docker") await removeShippedImages(uuid);
  // The app's egress chain (runner/egress-nft.ts) goes with it; a stop keeps it (fail closed).
  if (record.spec.egress && record.app_uid) await unconfine(record.app_uid).catch(() => {});
  ctx.adoptionErrors.delete(uuid);
  return { state: "purged" as const, uuid };
}

/** The runner's zero-downtime swap to `full`; the record follows only once the new version serves. */
async function swap(
  ctx: SupervisorContext,
  record: RunnerRecord,
  full: WorkloadSpec,
  artifactVersion: string | undefined,
): Promise<StartResult & { swapped: true }> {
  // A fresh copy for the new version: the old one keeps serving from its own until the swap.
  const { spec: runnable } = await forRunner(ctx, record, full, false);
  const keepOnly = (dir: string | undefined) =>
    ctx.opts.appUsers?.pruneReleases(record.uuid, new Set(dir ? [dir] : [])).catch(() => {});
  let reply: ControlReply;
  try {
    reply = await controlRequest(
      record.control_sock,
      { cmd: "deploy", spec: runnable },
      { timeoutMs: 420_000 },
    );
  } catch (err) {
    await keepOnly(record.staged_artifact_dir);
    throw new TabbifyError("SWAP_FAILED", `the runner did not complete the swap: ${(err as Error).message}`);
  }
  if (reply.reply !== "ok") {
    await keepOnly(record.staged_artifact_dir);
    const why = reply.reply === "err" ? reply.message : `unexpected reply ${reply.reply}`;
    throw new TabbifyError("SWAP_FAILED", `new version rejected, the old one keeps serving: ${why}`, {
      restart_status: restartStatus(record.restart, ctx.backoff),
      runner_log_tail: await tailLog(logPath(ctx, record.uuid)),
    });
  }
  keepStaged(ctx, record, runnable);
  await keepOnly(record.staged_artifact_dir);
  record.spec = full;
  record.crash_looped = false;
  record.restart = { ...freshRestartState(), last_healthy_at: new Date().toISOString() };
  if (full.image) record.image_ref = full.image;
  else delete record.image_ref;
  if (artifactVersion) record.artifact_version = artifactVersion;
  else delete record.artifact_version;
  const health = await healthOf(record);
  if (health) record.workload_pid = health.workload_pid;
  await ctx.records.write(record);
  return { ...startResult(record, health), swapped: true };
}

async function preflight(ctx: SupervisorContext, spec: WorkloadSpec): Promise<void> {
  const available = await ctx.opts.availableKinds();
  if (!available.includes(spec.runtime)) {
    throw new TabbifyError("RUNTIME_UNAVAILABLE", `this host cannot run ${spec.runtime} workloads`, {
      available,
    });
  }
  await ctx.opts.runtimeFor(spec.runtime).validate({ ...spec });
}

async function pruneCache(ctx: SupervisorContext, uuid: string, keep: number): Promise<void> {
  await ctx.opts.apps?.prune(uuid, new Set([keep])).catch((err: unknown) => {
    ctx.opts.logger.warn("could not prune cached versions", { uuid, error: (err as Error).message });
  });
}
