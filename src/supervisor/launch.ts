import type { ChildProcess } from "node:child_process";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { APP_PORT, appAddress, deriveAppUla, hostPort } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { readProcStat } from "../core/proc-stat.js";
import { sleep } from "../core/sleep.js";
import { controlRequest, type HealthReply, workloadPidPath } from "../runner/control.js";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { ensureAppData } from "./app-data.js";
import { logPath, type SupervisorContext } from "./context.js";
import { isRunnerProcess, prove } from "./proof.js";
import { freshRestartState, type RunnerRecord } from "./records.js";
import {
  defaultRunnerEntry,
  killGroup,
  processAlive,
  removeAppContainers,
  spawnRunner,
  stopGroup,
  tailLog,
} from "./spawn.js";
import type { StartResult } from "./supervisor.js";

/**
 * One runner's coming and going: spawning it (on a warm spare when there is one) with its
 * artifact staged for the app's user, waiting for it to serve, and retiring it with whatever
 * workload it leaves behind. Shared by lifecycle.ts (API calls) and reconcile.ts (respawns).
 */

export function startResult(record: RunnerRecord, health: HealthReply | undefined): StartResult {
  return {
    state: "running",
    app_ula: record.app_ula,
    bound_addr: record.bound_addr,
    version: health?.version ?? null,
    artifact_version: record.artifact_version ?? null,
    workload_pid: health?.workload_pid ?? null,
  };
}

/**
 * A runner killed outright leaves its workload (a process group of its own, or a container)
 * running, holding a port and memory. A process counts as that orphan only when it was
 * re-parented to init; containers carry the app's label.
 */
export async function killOrphanWorkload(
  ctx: SupervisorContext,
  record: RunnerRecord,
  opts: { keepContainers?: boolean } = {},
): Promise<void> {
  const fromFile = Number(
    (await readFile(workloadPidPath(record.control_sock), "utf8").catch(() => "")).trim(),
  );
  const candidates = new Set([
    record.workload_pid,
    Number.isInteger(fromFile) && fromFile > 0 ? fromFile : null,
  ]);
  for (const pid of candidates) {
    if (!pid || pid === process.pid || !(await processAlive(pid))) continue;
    if ((await readProcStat(pid))?.ppid === 1) {
      ctx.opts.logger.warn("stopping the workload a dead runner left behind", { uuid: record.uuid, pid });
      killGroup(pid);
    }
  }
  if (record.spec.runtime === "docker" && !opts.keepContainers) await removeAppContainers(record.uuid);
}

/** Stops a runner that is ours: the graceful way through its socket, else its process group. */
export async function retireRunner(ctx: SupervisorContext, record: RunnerRecord): Promise<void> {
  const pid = record.pid;
  if (pid === null) return;
  const proof = await prove(record);
  if (proof.kind === "ours") {
    try {
      await controlRequest(record.control_sock, { cmd: "stop" }, { timeoutMs: 30_000 });
    } catch (err) {
      ctx.opts.logger.warn("runner did not stop through its socket", {
        uuid: record.uuid,
        error: (err as Error).message,
      });
    }
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await processAlive(pid))) await sleep(50);
    if (await processAlive(pid)) await stopGroup(pid, 2_000);
    if (proof.health.workload_pid && (await processAlive(proof.health.workload_pid))) {
      killGroup(proof.health.workload_pid);
    }
    return;
  }
  if (proof.kind === "silent" && (await isRunnerProcess(pid, record.uuid))) {
    await stopGroup(pid, 5_000);
  }
  await killOrphanWorkload(ctx, record);
}

/**
 * What a runner is handed for `spec`: with app users, the app's user and the spec pointing at a
 * copy of its artifact in the app's directory (the recorded copy when `reuse` and it is still
 * there, so a respawn copies nothing); without, the spec as it is.
 */
export async function forRunner(
  ctx: SupervisorContext,
  record: RunnerRecord,
  spec: WorkloadSpec,
  reuse: boolean,
): Promise<{ spec: WorkloadSpec; user?: WorkloadUser }> {
  // The node's env joins only the runnable copy: record.spec (written to disk) never holds it.
  const extra = ctx.opts.secretEnv ? await ctx.opts.secretEnv(record.uuid) : {};
  const runnable = Object.keys(extra).length > 0 ? { ...spec, env: { ...spec.env, ...extra } } : spec;
  const prepared = await forAppUser(ctx, record, runnable, reuse);
  if (!spec.stateful) return prepared;
  const dataDir = await ensureAppData(ctx.opts.dataDir, record.uuid, spec, prepared.user);
  return { ...prepared, spec: { ...prepared.spec, dataDir } };
}

async function forAppUser(
  ctx: SupervisorContext,
  record: RunnerRecord,
  spec: WorkloadSpec,
  reuse: boolean,
): Promise<{ spec: WorkloadSpec; user?: WorkloadUser }> {
  const users = ctx.opts.appUsers;
  if (!users) return { spec };
  record.app_uid ??= await allocateUid(ctx, record.uuid);
  const user = await users.userFor(record.uuid, record.app_uid);
  if (spec.artifactDir === undefined) return { spec, user };
  if (reuse && (await users.isStaged(record.staged_artifact_dir, record.uuid)))
    return { spec: { ...spec, artifactDir: record.staged_artifact_dir! }, user };
  return { spec: await users.stage(spec, user), user };
}

export function keepStaged(ctx: SupervisorContext, record: RunnerRecord, runnable: WorkloadSpec): void {
  if (ctx.opts.appUsers && runnable.artifactDir !== undefined)
    record.staged_artifact_dir = runnable.artifactDir;
  else delete record.staged_artifact_dir;
}

/** A uid for the app: its hashed slot unless another app's record holds that uid. */
async function allocateUid(ctx: SupervisorContext, uuid: string): Promise<number> {
  const taken = new Set<number>();
  for (const other of await ctx.records.list()) {
    if (other === uuid) continue;
    const uid = (await ctx.records.read(other).catch(() => undefined))?.app_uid;
    if (uid !== undefined) taken.add(uid);
  }
  return ctx.opts.appUsers!.allocate(uuid, taken);
}

/** Starts the record's runner and records its pid; the caller decides what healthy means. */
export async function launch(ctx: SupervisorContext, record: RunnerRecord): Promise<ChildProcess> {
  const { opts } = ctx;
  if (record.mesh === "ula") await opts.addresses.add(record.app_ula);
  const { spec, user } = await forRunner(ctx, record, record.spec, true);
  const staged = record.staged_artifact_dir;
  keepStaged(ctx, record, spec);
  if (record.staged_artifact_dir !== staged)
    await opts.appUsers?.pruneReleases(record.uuid, new Set([record.staged_artifact_dir ?? ""]));
  const spare = await ctx.spares?.assign({
    uuid: record.uuid,
    bindAddr: record.bound_addr,
    controlSock: record.control_sock,
    logPath: logPath(ctx, record.uuid),
    spec,
    ...(user ? { user } : {}),
  });
  const child =
    spare?.child ??
    (await spawnRunner({
      entry: opts.runnerEntry ?? defaultRunnerEntry,
      uuid: record.uuid,
      controlSock: record.control_sock,
      dataDir: opts.dataDir,
      bindAddr: record.bound_addr,
      logPath: logPath(ctx, record.uuid),
      spec,
      ...(user ? { user } : {}),
      parent: opts.name,
      ...(opts.nodeUrl ? { nodeUrl: opts.nodeUrl } : {}),
      ...(opts.nodeKey ? { nodeKey: opts.nodeKey } : {}),
      ...(opts.runnerArgs ? { extraArgs: opts.runnerArgs } : {}),
    }));
  const pid = child.pid!;
  child.once("exit", () => ctx.runnerExited(record.uuid, pid));
  record.pid = pid;
  record.spawned_at = new Date().toISOString();
  record.workload_pid = null;
  try {
    await ctx.records.write(record);
  } catch (err) {
    // A runner nobody can find again must not live on.
    killGroup(child.pid!);
    throw err;
  }
  return child;
}

/** Spawns a runner and waits for it to serve; on failure nothing is left running or recorded. */
export async function coldSpawn(
  ctx: SupervisorContext,
  uuid: string,
  spec: WorkloadSpec,
  artifactVersion?: string,
): Promise<StartResult> {
  const { opts } = ctx;
  const record: RunnerRecord = {
    uuid,
    pid: null,
    control_sock: join(ctx.records.dir, `${uuid}.sock`),
    app_ula: deriveAppUla(uuid),
    bound_addr: hostPort(appAddress(uuid, opts.mesh), APP_PORT),
    mesh: opts.mesh,
    parent: opts.name,
    spawned_at: null,
    restart: freshRestartState(),
    spec: { ...spec, appUuid: uuid },
    workload_pid: null,
    crash_looped: false,
    stopped: false,
    ...(spec.image ? { image_ref: spec.image } : {}),
    ...(artifactVersion ? { artifact_version: artifactVersion } : {}),
  };
  ctx.adoptionErrors.delete(uuid);
  const child = await launch(ctx, record);
  let exit: { code: number | null; signal: string | null } | undefined;
  child.once("exit", (code, signal) => {
    exit = { code, signal };
  });
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  let lastWhy = "no answer on its control socket yet";
  let lastHealth: HealthReply | undefined;
  while (Date.now() < deadline) {
    if (exit) {
      lastWhy = `the runner exited (code ${exit.code ?? "none"}, signal ${exit.signal ?? "none"})`;
      break;
    }
    const proof = await prove(record);
    if (proof.kind === "ours") {
      lastHealth = proof.health;
      if (proof.health.app_health === "serving") {
        record.workload_pid = proof.health.workload_pid;
        record.restart.last_healthy_at = new Date().toISOString();
        await ctx.records.write(record);
        ctx.spares?.fill();
        return startResult(record, proof.health);
      }
      lastWhy = proof.health.app_health_reason ?? "the app is not serving yet";
    } else if (proof.kind === "foreign") {
      lastWhy = proof.message;
      break;
    }
    await sleep(10);
  }
  ctx.spares?.fill();
  if (!exit && Date.now() >= deadline)
    lastWhy = `not healthy within ${opts.startTimeoutMs ?? 30_000} ms: ${lastWhy}`;
  await abandon(ctx, record, lastHealth);
  throw new TabbifyError("RUNNER_UNHEALTHY", `app ${uuid} did not get healthy: ${lastWhy}`, {
    restart_status: "crashloop",
    runner_log_tail: await tailLog(logPath(ctx, uuid)),
  });
}

/** Undoes a cold spawn that never got healthy. */
async function abandon(
  ctx: SupervisorContext,
  record: RunnerRecord,
  health: HealthReply | undefined,
): Promise<void> {
  if (record.pid !== null) await stopGroup(record.pid, 2_000);
  if (health?.workload_pid && (await processAlive(health.workload_pid))) killGroup(health.workload_pid);
  await killOrphanWorkload(ctx, record);
  await ctx.records.remove(record.uuid);
  await unlink(workloadPidPath(record.control_sock)).catch(() => {});
  await unlink(record.control_sock).catch(() => {});
  if (record.mesh === "ula") await ctx.opts.addresses.remove(record.app_ula).catch(() => {});
}
