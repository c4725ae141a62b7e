import { join } from "node:path";
import { deriveAppUla, type MeshMode, parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { Runtime, RuntimeKind, WorkloadSpec } from "../runtimes/runtime.js";
import { type AppStore, versionLabel } from "./app-store.js";
import type { AppUsers } from "./app-users.js";
import { type BackoffPolicy, defaultBackoff, type RestartStatus, restartStatus } from "./backoff.js";
import { AppLocks, logPath, type SupervisorContext } from "./context.js";
import type { AddressManager } from "./host.js";
import { reconcileKernelHop } from "./kernel-hop-records.js";
import { deployApp, mustRead, purgeApp, restartApp, startApp, stopApp } from "./lifecycle.js";
import { type MigrationResult, runMigration } from "./migrate.js";
import type { NftHop } from "./nft-hop.js";
import { healthOf } from "./proof.js";
import { Reconciler } from "./reconcile.js";
import { freshRestartState, RecordStore } from "./records.js";
import { type ArtifactDeploy, artifactSpec, deployArtifactVersion } from "./release-deploy.js";
import { type RunnerRestarts, restartRunners } from "./runner-restart.js";
import { SparePool } from "./spares.js";
import { defaultRunnerEntry } from "./spawn.js";

/**
 * Runner lifecycle on one host. The supervisor is control plane only: it spawns detached
 * runners, records them, and on every reconcile pass proves each living runner through its
 * control socket (adopting it untouched) or respawns a dead one with backoff. Killing the
 * supervisor never touches a workload. A runner it spawned that dies is reconciled at once (the
 * exit is seen as it happens), and a first failure respawns without delay, on a warm spare.
 */

export interface SupervisorOptions {
  name: string;
  dataDir: string;
  mesh: MeshMode;
  runtimeFor: (kind: RuntimeKind) => Runtime;
  availableKinds: () => Promise<RuntimeKind[]>;
  addresses: AddressManager;
  logger: Logger;
  runnerEntry?: string;
  nodeUrl?: string;
  nodeKey?: string;
  backoff?: BackoffPolicy;
  reconcileIntervalMs?: number;
  /** How long start/deploy wait for a new runner to report healthy. */
  startTimeoutMs?: number;
  /** A runner this young is taken as alive without asking its socket (it may still be binding). */
  spawnGraceMs?: number;
  /** Extra flags passed to every runner (restart delays, health timeout). */
  runnerArgs?: string[];
  /** The artifact store (`tcli push`): apps started by uuid alone come from here. */
  apps?: AppStore;
  /**
   * Runners kept booted ahead, waiting for an app (see spares.ts): a start assigns one instead of
   * spawning, which takes the runner's own boot out of cold start. 0 (the default) spawns each.
   */
  warmSpares?: number;
  /**
   * Set when the supervisor runs as root: each app's workloads run as a uid of their own in
   * their own directory (see app-users.ts). Unset, they run as the supervisor's user.
   */
  appUsers?: AppUsers;
  /** The node's env for an app (`tcli env`), merged over the spec's at every spawn and swap. */
  secretEnv?: (uuid: string) => Promise<Record<string, string>>;
  /**
   * The kernel hop's table (nft-hop.ts), created already; runners get its name in `runnerArgs`.
   * Reconciled with the records at init, and an app's element is dropped when it stops.
   */
  kernelHop?: NftHop;
}

export interface AppRow {
  uuid: string;
  app_ula: string;
  /** `idle`: an on_request app scaled to zero (its runner holds the address; a request wakes it). */
  state: "running" | "idle" | "stopped";
  bound_addr: string | null;
  restart_status: RestartStatus;
  restart_count: number;
  next_retry_at: string | null;
  last_exit_at: string | null;
  crash_looped: boolean;
  runtime: RuntimeKind;
  pid: number | null;
  workload_pid: number | null;
  app_health: "serving" | "unavailable" | null;
  app_health_reason?: string;
  version: string | null;
  /** `v<N>` of the artifact store version running, null for apps started from a spec. */
  artifact_version: string | null;
  /** Workload restarts the runner did on its own after crashes. */
  restarts: number | null;
  /** Set once a limit stopped a workload or a request: `oom`, `cpu` (held at its vcpus cap past its health deadline) or `fuel`. */
  last_limit_reason?: "oom" | "cpu" | "fuel";
  adoption_error?: string;
  /** Who carries the app address's bytes: the kernel (nftables DNAT) or the runner. */
  hop?: "kernel" | "userspace";
  /** Why the userspace hop carries them although the supervisor has the kernel hop. */
  hop_reason?: string;
  /** An egress app's: `proxy+kernel`, or `proxy` when raw connections are not refused (`egress_reason` says why). */
  egress?: "proxy+kernel" | "proxy";
  egress_reason?: string;
}

export interface StartResult {
  state: "running";
  app_ula: string;
  bound_addr: string;
  version: string | null;
  artifact_version: string | null;
  workload_pid: number | null;
}

/** `GET /v1/apps/:uuid` for an app with no runner here that the artifact store can deliver. */
export interface StoredAppRow {
  uuid: string;
  present: true;
  state: "stopped";
  app_ula: string;
  bound_addr: null;
  /** What a start would run: the store's `v<N>`. */
  version: string;
  artifact_version: string;
}

export interface StartOptions {
  /** Run the store's newest version: a live runner on an older one swaps with zero downtime. */
  refresh?: boolean;
}

/**
 * The public face: it owns the shared context and composes lifecycle.ts (what the API does to an
 * app) with reconcile.ts (keeping runners alive), taking each app's lock around both.
 */
export class Supervisor {
  readonly records: RecordStore;
  private readonly ctx: SupervisorContext;
  private readonly reconciler: Reconciler;

  constructor(private readonly opts: SupervisorOptions) {
    this.records = new RecordStore(join(opts.dataDir, "runners"));
    let spares: SparePool | undefined;
    if ((opts.warmSpares ?? 0) > 0) {
      spares = new SparePool({
        size: opts.warmSpares!,
        runnersDir: this.records.dir,
        entry: opts.runnerEntry ?? defaultRunnerEntry,
        dataDir: opts.dataDir,
        parent: opts.name,
        ...(opts.nodeUrl ? { nodeUrl: opts.nodeUrl } : {}),
        ...(opts.nodeKey ? { nodeKey: opts.nodeKey } : {}),
        ...(opts.runnerArgs ? { extraArgs: opts.runnerArgs } : {}),
        logger: opts.logger.child("spares"),
      });
    }
    this.ctx = {
      opts,
      records: this.records,
      backoff: opts.backoff ?? defaultBackoff,
      spares,
      locks: new AppLocks(),
      adoptionErrors: new Map(),
      runnerExited: (uuid, pid) => this.reconciler.runnerExited(uuid, pid),
    };
    this.reconciler = new Reconciler(this.ctx);
  }

  /** Warm spares (see spares.ts): ready to take a start, and booting. */
  spareCounts(): { ready: number; booting: number } {
    return this.ctx.spares?.counts() ?? { ready: 0, booting: 0 };
  }

  get runnersDir(): string {
    return this.records.dir;
  }

  /** One reconcile pass (re-adoption), then one every interval. */
  async init(): Promise<void> {
    await this.records.init();
    await this.ctx.spares?.sweep();
    await this.reconcileAll();
    const mapped = await reconcileKernelHop(this.ctx);
    if (this.opts.kernelHop)
      this.opts.logger.info("kernel hop reconciled", { table: this.opts.kernelHop.table, apps: mapped });
    this.ctx.spares?.fill();
    this.reconciler.schedule(this.opts.reconcileIntervalMs ?? 5_000);
  }

  /** Stops reconciling. Runners keep running: they do not depend on the supervisor. */
  async close(): Promise<void> {
    await this.reconciler.close();
    await this.ctx.spares?.close();
  }

  async list(): Promise<AppRow[]> {
    const uuids = await this.records.list();
    const rows = await Promise.all(uuids.map((u) => this.row(u)));
    return rows.filter((r): r is AppRow => r !== undefined);
  }

  /** The app's row with live health; APP_NOT_FOUND when there is no record. */
  async get(uuidInput: string): Promise<AppRow> {
    const uuid = parseAppUuid(uuidInput);
    const row = await this.row(uuid);
    if (!row)
      throw new TabbifyError("APP_NOT_FOUND", `no app ${uuid} on this supervisor`, { uuid, present: false });
    return row;
  }

  /**
   * Starts the app unless its runner is alive (then answers as it is). Without a `spec`: an app
   * started from a spec restarts from its record; any other app runs the artifact store's newest
   * version. `refresh` asks for the store's newest version even when a runner is alive.
   */
  start(
    uuidInput: string,
    spec: WorkloadSpec | undefined,
    opts: StartOptions = {},
  ): Promise<StartResult & { swapped?: boolean }> {
    const uuid = parseAppUuid(uuidInput);
    if (spec && opts.refresh) {
      throw new TabbifyError("SPEC_INVALID", "refresh runs the artifact store's version and takes no spec");
    }
    return this.ctx.locks.run(uuid, () => startApp(this.ctx, uuid, spec, opts));
  }

  /**
   * `GET /v1/apps/:uuid`: the runner's row; with no runner here, what the artifact store holds
   * (APP_NOT_FOUND when nothing, ARTIFACT_STORE_FAILED when the store fails).
   */
  async describe(uuidInput: string): Promise<(AppRow & { present: true }) | StoredAppRow> {
    const uuid = parseAppUuid(uuidInput);
    const row = await this.row(uuid);
    if (row) return { ...row, present: true };
    if (!this.opts.apps)
      throw new TabbifyError("APP_NOT_FOUND", `no app ${uuid} on this supervisor`, { uuid, present: false });
    const label = versionLabel(await this.opts.apps.latest(uuid));
    return {
      uuid,
      present: true,
      state: "stopped",
      app_ula: deriveAppUla(uuid),
      bound_addr: null,
      version: label,
      artifact_version: label,
    };
  }

  /**
   * Keeps the apps named with `--app` running: each one without a record here is started from
   * the artifact store, retried with the restart backoff until it runs (the app may not be
   * pushed yet, the store may be down). Apps with a record are the reconcile loop's: adopted
   * when alive, respawned with backoff when dead, left alone when an operator stopped them.
   */
  startPinned(uuids: readonly string[]): Promise<void> {
    const loops = uuids.map((input) =>
      this.reconciler.keepStarting(parseAppUuid(input), (uuid) => this.start(uuid, undefined)),
    );
    return Promise.all(loops).then(() => undefined);
  }

  /**
   * A new version. Onto a live runner: the runner's zero-downtime swap (a failing new version
   * leaves the old one serving and this throws SWAP_FAILED with why). No live runner: cold spawn.
   */
  deploy(uuidInput: string, spec: WorkloadSpec): Promise<StartResult & { swapped: boolean }> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, () => deployApp(this.ctx, uuid, spec));
  }

  /** Rolls version N of the artifact store (a pushed release), swapped in like `deploy`. */
  deployArtifact(uuidInput: string, deploy: ArtifactDeploy): Promise<StartResult & { swapped: boolean }> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, () => deployArtifactVersion(this.ctx, uuid, deploy));
  }

  /**
   * Runs a release's migration (migrate.ts) for the app, outside the app's lock: a long migration
   * must not hold up a stop or a restart of the release that keeps serving meanwhile.
   */
  async migrate(
    uuidInput: string,
    release: { spec: WorkloadSpec } | { artifact: ArtifactDeploy },
    command: string[],
    timeoutSec: number,
  ): Promise<MigrationResult> {
    const uuid = parseAppUuid(uuidInput);
    const spec =
      "spec" in release ? release.spec : (await artifactSpec(this.ctx, uuid, release.artifact)).spec;
    return runMigration(this.ctx, uuid, spec, command, timeoutSec);
  }

  /** Zero-downtime swap onto the same release (lifecycle.ts restartApp). */
  restart(uuidInput: string): Promise<StartResult & { swapped: true }> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, () => restartApp(this.ctx, uuid));
  }

  /** Every runner handed over to a new runner of this supervisor's release (runner-restart.ts). */
  restartRunners(): Promise<RunnerRestarts> {
    return restartRunners(this.ctx);
  }

  stop(uuidInput: string): Promise<{ state: "stopped" }> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, () => stopApp(this.ctx, uuid));
  }

  purge(uuidInput: string): Promise<{ state: "purged"; uuid: string }> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, () => purgeApp(this.ctx, uuid));
  }

  /** Clears backoff and crash-loop parking; a dead, not stopped runner is respawned at once. */
  reset(uuidInput: string): Promise<AppRow> {
    const uuid = parseAppUuid(uuidInput);
    return this.ctx.locks.run(uuid, async () => {
      const record = await mustRead(this.ctx, uuid);
      record.restart = freshRestartState();
      record.crash_looped = false;
      await this.records.write(record);
      await this.reconciler.one(uuid);
      return (await this.row(uuid))!;
    });
  }

  logPath(uuid: string): string {
    return logPath(this.ctx, uuid);
  }

  /** One pass over every record; one app's trouble never stops the others. */
  reconcileAll(): Promise<void> {
    return this.reconciler.all();
  }

  private async row(uuid: string): Promise<AppRow | undefined> {
    const record = await this.records.read(uuid);
    if (!record) return undefined;
    const health = record.pid !== null && !record.stopped ? await healthOf(record) : undefined;
    const running = health !== undefined;
    const row: AppRow = {
      uuid,
      app_ula: record.app_ula,
      state: !running ? "stopped" : health.state === "idle" ? "idle" : "running",
      bound_addr: running ? record.bound_addr : null,
      restart_status: restartStatus(record.restart, this.ctx.backoff),
      restart_count: record.restart.consecutive_failures,
      next_retry_at: record.restart.next_retry_at,
      last_exit_at: record.restart.last_exit_at,
      crash_looped: record.crash_looped,
      runtime: record.spec.runtime,
      pid: running ? record.pid : null,
      workload_pid: health?.workload_pid ?? null,
      app_health: health?.app_health ?? null,
      version: health?.version ?? null,
      artifact_version: record.artifact_version ?? null,
      restarts: health?.restarts ?? null,
    };
    if (health?.app_health_reason) row.app_health_reason = health.app_health_reason;
    if (health?.last_limit_reason) row.last_limit_reason = health.last_limit_reason;
    if (health?.hop) row.hop = health.hop;
    if (health?.hop_reason) row.hop_reason = health.hop_reason;
    if (health?.egress) row.egress = health.egress;
    if (health?.egress_reason) row.egress_reason = health.egress_reason;
    const adoptionError = this.ctx.adoptionErrors.get(uuid);
    if (adoptionError) row.adoption_error = adoptionError;
    return row;
  }
}
