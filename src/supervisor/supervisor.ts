import type { ChildProcess } from "node:child_process";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  APP_PORT,
  appAddress,
  deriveAppUla,
  hostPort,
  type MeshMode,
  parseAppUuid,
} from "../core/address.js";
import { isErrno, TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { type ControlReply, controlRequest, type HealthReply, workloadPidPath } from "../runner/control.js";
import type { Runtime, RuntimeKind, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { type AppStore, versionLabel } from "./app-store.js";
import type { AppUsers } from "./app-users.js";
import {
  afterFailure,
  afterHealthy,
  type BackoffPolicy,
  defaultBackoff,
  dueForRetry,
  type RestartStatus,
  restartStatus,
} from "./backoff.js";
import type { AddressManager } from "./host.js";
import { freshRestartState, RecordStore, type RunnerRecord } from "./records.js";
import { SparePool } from "./spares.js";
import {
  defaultRunnerEntry,
  killGroup,
  processAlive,
  removeAppContainers,
  removeShippedImages,
  spawnRunner,
  stopGroup,
  tailLog,
} from "./spawn.js";

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
}

export interface AppRow {
  uuid: string;
  app_ula: string;
  state: "running" | "stopped";
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
  adoption_error?: string;
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

type Proof =
  | { kind: "ours"; health: HealthReply }
  | { kind: "foreign"; message: string }
  | { kind: "silent"; message: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Supervisor {
  readonly records: RecordStore;
  private readonly backoff: BackoffPolicy;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly adoptionErrors = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private closed = false;
  private readonly pauses = new Set<() => void>();
  private readonly spares: SparePool | undefined;

  constructor(private readonly opts: SupervisorOptions) {
    this.records = new RecordStore(join(opts.dataDir, "runners"));
    this.backoff = opts.backoff ?? defaultBackoff;
    if ((opts.warmSpares ?? 0) > 0) {
      this.spares = new SparePool({
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
  }

  /** Warm spares (see spares.ts): ready to take a start, and booting. */
  spareCounts(): { ready: number; booting: number } {
    return this.spares?.counts() ?? { ready: 0, booting: 0 };
  }

  get runnersDir(): string {
    return this.records.dir;
  }

  /** One reconcile pass (re-adoption), then one every interval. */
  async init(): Promise<void> {
    await this.records.init();
    await this.spares?.sweep();
    await this.reconcileAll();
    this.spares?.fill();
    const every = this.opts.reconcileIntervalMs ?? 5_000;
    const tick = () => {
      if (this.closed) return;
      this.pass = this.reconcileAll().finally(() => {
        this.timer = setTimeout(tick, every);
      });
    };
    this.timer = setTimeout(tick, every);
  }

  /** Stops reconciling. Runners keep running: they do not depend on the supervisor. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const wake of this.pauses) wake();
    await this.pass;
    await this.spares?.close();
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
    return this.withLock(uuid, async () => {
      const record = await this.records.read(uuid);
      let live: HealthReply | undefined;
      if (record && !record.stopped && record.pid !== null) {
        // A living runner is left alone even while its workload restarts: it heals itself.
        const proof = await this.prove(record);
        if (proof.kind === "ours") live = proof.health;
      }
      if (record && live && !opts.refresh) return this.result(record, live);
      const fromRecord = !opts.refresh && record !== undefined && record.artifact_version === undefined;
      if (spec || fromRecord || !this.opts.apps) {
        const chosen = spec ?? record?.spec;
        if (!chosen) {
          throw new TabbifyError(
            "SPEC_INVALID",
            `app ${uuid} has no record here and no artifact store is configured; the body needs a runtime and its artifact`,
          );
        }
        await this.preflight(chosen);
        if (record?.pid) await this.retireRunner(record);
        return this.coldSpawn(uuid, chosen);
      }
      const apps = this.opts.apps;
      const version = await apps.latest(uuid);
      if (record && live) {
        if (record.artifact_version === versionLabel(version))
          return { ...this.result(record, live), swapped: false };
        const fetched = await apps.fetch(uuid, version);
        await this.preflight(fetched.spec);
        const swapped = await this.swap(record, { ...fetched.spec, appUuid: uuid }, fetched.label);
        await this.pruneCache(uuid, version);
        return swapped;
      }
      const fetched = await apps.fetch(uuid, version);
      await this.preflight(fetched.spec);
      if (record?.pid) await this.retireRunner(record);
      const started = await this.coldSpawn(uuid, fetched.spec, fetched.label);
      await this.pruneCache(uuid, version);
      return opts.refresh ? { ...started, swapped: false } : started;
    });
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
    const loops = uuids.map((input) => this.keepStarting(parseAppUuid(input)));
    return Promise.all(loops).then(() => undefined);
  }

  private async keepStarting(uuid: string): Promise<void> {
    for (let failures = 0; !this.closed; ) {
      const record = await this.records.read(uuid).catch(() => undefined);
      if (record) {
        this.opts.logger.info("--app has a runner record; the reconcile loop keeps it", {
          uuid,
          stopped: record.stopped,
        });
        return;
      }
      try {
        const started = await this.start(uuid, undefined);
        this.opts.logger.info("started app from the artifact store", {
          uuid,
          artifact_version: started.artifact_version,
          bound_addr: started.bound_addr,
        });
        return;
      } catch (err) {
        failures++;
        const delay = Math.min(this.backoff.baseMs * 2 ** Math.min(failures - 1, 20), this.backoff.capMs);
        this.opts.logger.warn("could not start --app; retrying", {
          uuid,
          error: (err as Error).message,
          code: (err as { code?: string }).code,
          retry_in_ms: delay,
        });
        await this.pause(delay);
      }
    }
  }

  /** Sleeps, cut short by close(). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pauses.delete(done);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.pauses.add(done);
    });
  }

  private async pruneCache(uuid: string, keep: number): Promise<void> {
    await this.opts.apps?.prune(uuid, new Set([keep])).catch((err: unknown) => {
      this.opts.logger.warn("could not prune cached versions", { uuid, error: (err as Error).message });
    });
  }

  /**
   * A new version. Onto a live runner: the runner's zero-downtime swap (a failing new version
   * leaves the old one serving and this throws SWAP_FAILED with why). No live runner: cold spawn.
   */
  deploy(uuidInput: string, spec: WorkloadSpec): Promise<StartResult & { swapped: boolean }> {
    const uuid = parseAppUuid(uuidInput);
    return this.withLock(uuid, async () => {
      await this.preflight(spec);
      const full = { ...spec, appUuid: uuid };
      const record = await this.records.read(uuid);
      if (record && !record.stopped && record.pid !== null) {
        const proof = await this.prove(record);
        if (proof.kind === "ours") return this.swap(record, full, undefined);
      }
      if (record?.pid) await this.retireRunner(record);
      return { ...(await this.coldSpawn(uuid, full)), swapped: false };
    });
  }

  /** The runner's zero-downtime swap to `full`; the record follows only once the new version serves. */
  private async swap(
    record: RunnerRecord,
    full: WorkloadSpec,
    artifactVersion: string | undefined,
  ): Promise<StartResult & { swapped: true }> {
    // A fresh copy for the new version: the old one keeps serving from its own until the swap.
    const { spec: runnable } = await this.forRunner(record, full, false);
    const keepOnly = (dir: string | undefined) =>
      this.opts.appUsers?.pruneReleases(record.uuid, new Set(dir ? [dir] : [])).catch(() => {});
    let reply: ControlReply;
    try {
      reply = await controlRequest(
        record.control_sock,
        { cmd: "deploy", spec: runnable },
        { timeoutMs: 420_000 },
      );
    } catch (err) {
      await keepOnly(record.staged_artifact_dir);
      throw new TabbifyError(
        "SWAP_FAILED",
        `the runner did not complete the swap: ${(err as Error).message}`,
      );
    }
    if (reply.reply !== "ok") {
      await keepOnly(record.staged_artifact_dir);
      const why = reply.reply === "err" ? reply.message : `unexpected reply ${reply.reply}`;
      throw new TabbifyError("SWAP_FAILED", `new version rejected, the old one keeps serving: ${why}`, {
        restart_status: restartStatus(record.restart, this.backoff),
      });
    }
    this.keepStaged(record, runnable);
    await keepOnly(record.staged_artifact_dir);
    record.spec = full;
    record.crash_looped = false;
    record.restart = { ...freshRestartState(), last_healthy_at: new Date().toISOString() };
    if (full.image) record.image_ref = full.image;
    else delete record.image_ref;
    if (artifactVersion) record.artifact_version = artifactVersion;
    else delete record.artifact_version;
    const health = await this.healthOf(record);
    if (health) record.workload_pid = health.workload_pid;
    await this.records.write(record);
    return { ...this.result(record, health), swapped: true };
  }

  stop(uuidInput: string): Promise<{ state: "stopped" }> {
    const uuid = parseAppUuid(uuidInput);
    return this.withLock(uuid, async () => {
      const record = await this.mustRead(uuid);
      if (record.pid !== null) await this.retireRunner(record);
      record.pid = null;
      record.workload_pid = null;
      record.stopped = true;
      await this.records.write(record);
      return { state: "stopped" as const };
    });
  }

  purge(uuidInput: string): Promise<{ state: "purged"; uuid: string }> {
    const uuid = parseAppUuid(uuidInput);
    return this.withLock(uuid, async () => {
      const record = await this.mustRead(uuid);
      if (record.pid !== null) await this.retireRunner(record);
      await this.records.remove(uuid);
      await this.opts.appUsers?.purge(uuid);
      const files = [
        record.control_sock,
        workloadPidPath(record.control_sock),
        this.logPath(uuid),
        `${this.logPath(uuid)}.1`,
      ];
      for (const file of files) {
        await unlink(file).catch((err: unknown) => {
          if (!isErrno(err, "ENOENT")) throw err;
        });
      }
      if (record.mesh === "ula") await this.opts.addresses.remove(record.app_ula);
      await this.opts.apps?.purge(uuid);
      if (record.spec.runtime === "docker") await removeShippedImages(uuid);
      this.adoptionErrors.delete(uuid);
      return { state: "purged" as const, uuid };
    });
  }

  /** Clears backoff and crash-loop parking; a dead, not stopped runner is respawned at once. */
  reset(uuidInput: string): Promise<AppRow> {
    const uuid = parseAppUuid(uuidInput);
    return this.withLock(uuid, async () => {
      const record = await this.mustRead(uuid);
      record.restart = freshRestartState();
      record.crash_looped = false;
      await this.records.write(record);
      await this.reconcileOne(uuid);
      return (await this.row(uuid))!;
    });
  }

  logPath(uuid: string): string {
    return join(this.records.dir, `${uuid}.log`);
  }

  /** One pass over every record; one app's trouble never stops the others. */
  async reconcileAll(): Promise<void> {
    for (const uuid of await this.records.list()) {
      await this.withLock(uuid, () => this.reconcileOne(uuid)).catch((err: unknown) => {
        this.opts.logger.error("reconcile failed", { uuid, error: (err as Error).message });
      });
    }
  }

  private async reconcileOne(uuid: string): Promise<void> {
    const record = await this.records.read(uuid);
    if (!record || record.stopped) return;
    const now = Date.now();
    if (record.pid !== null) {
      const proof = await this.prove(record);
      if (proof.kind === "ours") {
        this.adoptionErrors.delete(uuid);
        // last_healthy_at moves on every pass; the record is rewritten only when more than that changed.
        const comparable = () =>
          JSON.stringify({ ...record, restart: { ...record.restart, last_healthy_at: null } });
        const before = comparable();
        record.workload_pid = proof.health.workload_pid;
        if (proof.health.app_health === "serving") {
          const spawnedAt = record.spawned_at ? Date.parse(record.spawned_at) : now;
          record.restart = afterHealthy(record.restart, spawnedAt, now, this.backoff);
        }
        if (comparable() !== before) await this.records.write(record);
        return;
      }
      const young =
        record.spawned_at !== null &&
        now - Date.parse(record.spawned_at) < (this.opts.spawnGraceMs ?? 10_000);
      if (proof.kind === "silent" && (await processAlive(record.pid))) {
        if (young || (await this.isRunnerProcess(record.pid, uuid))) {
          if (!young)
            this.opts.logger.warn("runner alive but its control socket is silent", { uuid, pid: record.pid });
          return;
        }
      }
      if (proof.kind === "foreign") {
        // Someone else answers on this app's socket path: never adopt it, never signal its pid.
        this.adoptionErrors.set(uuid, proof.message);
        this.opts.logger.error("control socket is not this app's runner; not adopting", {
          uuid,
          why: proof.message,
        });
      }
      const { restart, parked } = afterFailure(record.restart, now, this.backoff);
      // A container outlives its runner like a process does, but a respawned runner adopts it
      // (zero restarts of the app) when it still runs the recorded spec; only a parked app's goes.
      if (proof.kind !== "foreign") await this.killOrphanWorkload(record, { keepContainers: !parked });
      record.restart = restart;
      record.crash_looped = parked;
      record.pid = null;
      record.workload_pid = null;
      await this.records.write(record);
      this.opts.logger.warn(
        parked ? "runner died; parked after repeated failures" : "runner died; respawn scheduled",
        {
          uuid,
          failures: restart.consecutive_failures,
          next_retry_at: restart.next_retry_at,
        },
      );
    }
    if (record.crash_looped || !dueForRetry(record.restart, Date.now())) return;
    if (this.adoptionErrors.has(uuid) && (await this.socketAnswers(record.control_sock))) return;
    await this.launch(record);
    this.opts.logger.info("respawned runner", { uuid, pid: record.pid });
    this.spares?.fill();
  }

  private async socketAnswers(path: string): Promise<boolean> {
    return controlRequest(path, { cmd: "ping" }, { timeoutMs: 1_000 }).then(
      () => true,
      () => false,
    );
  }

  /** Proves a runner through its control socket: it must answer health for this uuid and address. */
  private async prove(record: RunnerRecord): Promise<Proof> {
    let reply: ControlReply;
    try {
      reply = await controlRequest(record.control_sock, { cmd: "health" }, { timeoutMs: 2_000 });
    } catch (err) {
      return { kind: "silent", message: (err as Error).message };
    }
    if (reply.reply !== "health")
      return { kind: "foreign", message: `health answered with "${reply.reply}"` };
    if (reply.app_uuid !== record.uuid || reply.app_ula !== record.app_ula) {
      return {
        kind: "foreign",
        message: `the socket answers for app ${String(reply.app_uuid).slice(0, 64)}, not ${record.uuid}`,
      };
    }
    if (record.pid !== null && reply.pid !== record.pid) {
      return {
        kind: "foreign",
        message: `the socket answers from pid ${reply.pid}, not the recorded ${record.pid}`,
      };
    }
    return { kind: "ours", health: reply };
  }

  private async healthOf(record: RunnerRecord): Promise<HealthReply | undefined> {
    const proof = await this.prove(record);
    return proof.kind === "ours" ? proof.health : undefined;
  }

  /**
   * Whether `pid` runs `tabbify runner --uuid <uuid>` (guards against a reused pid). An assigned
   * spare says so in its process title, which /proc shows as one space-separated string.
   */
  private async isRunnerProcess(pid: number, uuid: string): Promise<boolean> {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    const args = cmdline.split(/[\0 ]+/);
    const i = args.indexOf("--uuid");
    return args.includes("runner") && i >= 0 && args[i + 1] === uuid;
  }

  /**
   * A runner killed outright leaves its workload (a process group of its own, or a container)
   * running, holding a port and memory. A process counts as that orphan only when it was
   * re-parented to init; containers carry the app's label.
   */
  private async killOrphanWorkload(
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
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === 1) {
        this.opts.logger.warn("stopping the workload a dead runner left behind", { uuid: record.uuid, pid });
        killGroup(pid);
      }
    }
    if (record.spec.runtime === "docker" && !opts.keepContainers) await removeAppContainers(record.uuid);
  }

  /** Stops a runner that is ours: the graceful way through its socket, else its process group. */
  private async retireRunner(record: RunnerRecord): Promise<void> {
    const pid = record.pid;
    if (pid === null) return;
    const proof = await this.prove(record);
    if (proof.kind === "ours") {
      try {
        await controlRequest(record.control_sock, { cmd: "stop" }, { timeoutMs: 30_000 });
      } catch (err) {
        this.opts.logger.warn("runner did not stop through its socket", {
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
    if (proof.kind === "silent" && (await this.isRunnerProcess(pid, record.uuid))) {
      await stopGroup(pid, 5_000);
    }
    await this.killOrphanWorkload(record);
  }

  private async preflight(spec: WorkloadSpec): Promise<void> {
    const available = await this.opts.availableKinds();
    if (!available.includes(spec.runtime)) {
      throw new TabbifyError("RUNTIME_UNAVAILABLE", `this host cannot run ${spec.runtime} workloads`, {
        available,
      });
    }
    await this.opts.runtimeFor(spec.runtime).validate({ ...spec });
  }

  private boundAddr(uuid: string): string {
    return hostPort(appAddress(uuid, this.opts.mesh), APP_PORT);
  }

  /**
   * What a runner is handed for `spec`: with app users, the app's user and the spec pointing at a
   * copy of its artifact in the app's directory (the recorded copy when `reuse` and it is still
   * there, so a respawn copies nothing); without, the spec as it is.
   */
  private async forRunner(
    record: RunnerRecord,
    spec: WorkloadSpec,
    reuse: boolean,
  ): Promise<{ spec: WorkloadSpec; user?: WorkloadUser }> {
    const users = this.opts.appUsers;
    if (!users) return { spec };
    record.app_uid ??= await this.allocateUid(record.uuid);
    const user = await users.userFor(record.uuid, record.app_uid);
    if (spec.artifactDir === undefined) return { spec, user };
    if (reuse && (await users.isStaged(record.staged_artifact_dir, record.uuid)))
      return { spec: { ...spec, artifactDir: record.staged_artifact_dir! }, user };
    return { spec: await users.stage(spec, user), user };
  }

  private keepStaged(record: RunnerRecord, runnable: WorkloadSpec): void {
    if (this.opts.appUsers && runnable.artifactDir !== undefined)
      record.staged_artifact_dir = runnable.artifactDir;
    else delete record.staged_artifact_dir;
  }

  /** A uid for the app: its hashed slot unless another app's record holds that uid. */
  private async allocateUid(uuid: string): Promise<number> {
    const taken = new Set<number>();
    for (const other of await this.records.list()) {
      if (other === uuid) continue;
      const uid = (await this.records.read(other).catch(() => undefined))?.app_uid;
      if (uid !== undefined) taken.add(uid);
    }
    return this.opts.appUsers!.allocate(uuid, taken);
  }

  /** A runner this supervisor spawned exited: its app is reconciled now, not at the next pass. */
  private runnerExited(uuid: string, pid: number): void {
    if (this.closed) return;
    this.withLock(uuid, async () => {
      const record = await this.records.read(uuid);
      // A runner stopped or replaced on purpose has left its record (or the record moved on).
      if (!this.closed && record && !record.stopped && record.pid === pid) await this.reconcileOne(uuid);
    }).catch((err: unknown) => {
      this.opts.logger.error("reconcile after a runner's exit failed", {
        uuid,
        error: (err as Error).message,
      });
    });
  }

  private async launch(record: RunnerRecord): Promise<ChildProcess> {
    if (record.mesh === "ula") await this.opts.addresses.add(record.app_ula);
    const { spec, user } = await this.forRunner(record, record.spec, true);
    const staged = record.staged_artifact_dir;
    this.keepStaged(record, spec);
    if (record.staged_artifact_dir !== staged)
      await this.opts.appUsers?.pruneReleases(record.uuid, new Set([record.staged_artifact_dir ?? ""]));
    const spare = await this.spares?.assign({
      uuid: record.uuid,
      bindAddr: record.bound_addr,
      controlSock: record.control_sock,
      logPath: this.logPath(record.uuid),
      spec,
      ...(user ? { user } : {}),
    });
    const child =
      spare?.child ??
      (await spawnRunner({
        entry: this.opts.runnerEntry ?? defaultRunnerEntry,
        uuid: record.uuid,
        controlSock: record.control_sock,
        dataDir: this.opts.dataDir,
        bindAddr: record.bound_addr,
        logPath: this.logPath(record.uuid),
        spec,
        ...(user ? { user } : {}),
        parent: this.opts.name,
        ...(this.opts.nodeUrl ? { nodeUrl: this.opts.nodeUrl } : {}),
        ...(this.opts.nodeKey ? { nodeKey: this.opts.nodeKey } : {}),
        ...(this.opts.runnerArgs ? { extraArgs: this.opts.runnerArgs } : {}),
      }));
    const pid = child.pid!;
    child.once("exit", () => this.runnerExited(record.uuid, pid));
    record.pid = pid;
    record.spawned_at = new Date().toISOString();
    record.workload_pid = null;
    try {
      await this.records.write(record);
    } catch (err) {
      // A runner nobody can find again must not live on.
      killGroup(child.pid!);
      throw err;
    }
    return child;
  }

  /** Spawns a runner and waits for it to serve; on failure nothing is left running or recorded. */
  private async coldSpawn(uuid: string, spec: WorkloadSpec, artifactVersion?: string): Promise<StartResult> {
    const record: RunnerRecord = {
      uuid,
      pid: null,
      control_sock: join(this.records.dir, `${uuid}.sock`),
      app_ula: deriveAppUla(uuid),
      bound_addr: this.boundAddr(uuid),
      mesh: this.opts.mesh,
      parent: this.opts.name,
      spawned_at: null,
      restart: freshRestartState(),
      spec: { ...spec, appUuid: uuid },
      workload_pid: null,
      crash_looped: false,
      stopped: false,
      ...(spec.image ? { image_ref: spec.image } : {}),
      ...(artifactVersion ? { artifact_version: artifactVersion } : {}),
    };
    this.adoptionErrors.delete(uuid);
    const child = await this.launch(record);
    let exit: { code: number | null; signal: string | null } | undefined;
    child.once("exit", (code, signal) => {
      exit = { code, signal };
    });
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 30_000);
    let lastWhy = "no answer on its control socket yet";
    let lastHealth: HealthReply | undefined;
    while (Date.now() < deadline) {
      if (exit) {
        lastWhy = `the runner exited (code ${exit.code ?? "none"}, signal ${exit.signal ?? "none"})`;
        break;
      }
      const proof = await this.prove(record);
      if (proof.kind === "ours") {
        lastHealth = proof.health;
        if (proof.health.app_health === "serving") {
          record.workload_pid = proof.health.workload_pid;
          record.restart.last_healthy_at = new Date().toISOString();
          await this.records.write(record);
          this.spares?.fill();
          return this.result(record, proof.health);
        }
        lastWhy = proof.health.app_health_reason ?? "the app is not serving yet";
      } else if (proof.kind === "foreign") {
        lastWhy = proof.message;
        break;
      }
      await sleep(10);
    }
    this.spares?.fill();
    if (!exit && Date.now() >= deadline)
      lastWhy = `not healthy within ${this.opts.startTimeoutMs ?? 30_000} ms: ${lastWhy}`;
    await this.abandon(record, lastHealth);
    throw new TabbifyError("RUNNER_UNHEALTHY", `app ${uuid} did not get healthy: ${lastWhy}`, {
      restart_status: "crashloop",
      runner_log_tail: await tailLog(this.logPath(uuid)),
    });
  }

  /** Undoes a cold spawn that never got healthy. */
  private async abandon(record: RunnerRecord, health: HealthReply | undefined): Promise<void> {
    if (record.pid !== null) await stopGroup(record.pid, 2_000);
    if (health?.workload_pid && (await processAlive(health.workload_pid))) killGroup(health.workload_pid);
    await this.killOrphanWorkload(record);
    await this.records.remove(record.uuid);
    await unlink(workloadPidPath(record.control_sock)).catch(() => {});
    await unlink(record.control_sock).catch(() => {});
    if (record.mesh === "ula") await this.opts.addresses.remove(record.app_ula).catch(() => {});
  }

  private result(record: RunnerRecord, health: HealthReply | undefined): StartResult {
    return {
      state: "running",
      app_ula: record.app_ula,
      bound_addr: record.bound_addr,
      version: health?.version ?? null,
      artifact_version: record.artifact_version ?? null,
      workload_pid: health?.workload_pid ?? null,
    };
  }

  private async row(uuid: string): Promise<AppRow | undefined> {
    const record = await this.records.read(uuid);
    if (!record) return undefined;
    const health = record.pid !== null && !record.stopped ? await this.healthOf(record) : undefined;
    const running = health !== undefined;
    const row: AppRow = {
      uuid,
      app_ula: record.app_ula,
      state: running ? "running" : "stopped",
      bound_addr: running ? record.bound_addr : null,
      restart_status: restartStatus(record.restart, this.backoff),
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
    const adoptionError = this.adoptionErrors.get(uuid);
    if (adoptionError) row.adoption_error = adoptionError;
    return row;
  }

  private async mustRead(uuid: string): Promise<RunnerRecord> {
    const record = await this.records.read(uuid);
    if (!record)
      throw new TabbifyError("APP_NOT_FOUND", `no app ${uuid} on this supervisor`, { uuid, present: false });
    return record;
  }

  /** Serializes everything that changes one app: API calls and reconcile passes alike. */
  private withLock<T>(uuid: string, step: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(uuid) ?? Promise.resolve();
    const run = previous.then(step, step);
    const tail = run.catch(() => {});
    this.locks.set(uuid, tail);
    tail.then(() => {
      if (this.locks.get(uuid) === tail) this.locks.delete(uuid);
    });
    return run;
  }
}
