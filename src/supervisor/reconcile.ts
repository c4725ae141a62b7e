import { backoffDelay } from "../core/backoff.js";
import { afterFailure, afterHealthy, dueForRetry } from "./backoff.js";
import type { SupervisorContext } from "./context.js";
import { killOrphanWorkload, launch } from "./launch.js";
import { isRunnerProcess, prove, socketAnswers } from "./proof.js";
import { processAlive } from "./spawn.js";
import type { StartResult } from "./supervisor.js";

/**
 * Keeps every record's runner alive: a pass at start and one every interval, plus one for an app
 * as soon as a runner this supervisor spawned exits. A living runner is proved through its control
 * socket and adopted untouched; a dead one counts a failure and is respawned when its backoff
 * allows. Also retries `--app` starts with the same backoff until they run.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private closed = false;
  private readonly pauses = new Set<() => void>();

  constructor(private readonly ctx: SupervisorContext) {}

  /** A pass every `everyMs`, each interval counted from the end of the previous pass. */
  schedule(everyMs: number): void {
    const tick = () => {
      if (this.closed) return;
      this.pass = this.all().finally(() => {
        this.timer = setTimeout(tick, everyMs);
      });
    };
    this.timer = setTimeout(tick, everyMs);
  }

  /** Stops passes and retries, and waits out a pass under way. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const wake of this.pauses) wake();
    await this.pass;
  }

  /** One pass over every record; one app's trouble never stops the others. */
  async all(): Promise<void> {
    const { ctx } = this;
    for (const uuid of await ctx.records.list()) {
      await ctx.locks
        .run(uuid, () => this.one(uuid))
        .catch((err: unknown) => {
          ctx.opts.logger.error("reconcile failed", { uuid, error: (err as Error).message });
        });
    }
  }

  /** Reconciles one app; the caller holds its lock. */
  async one(uuid: string): Promise<void> {
    const { ctx } = this;
    const record = await ctx.records.read(uuid);
    if (!record || record.stopped) return;
    const now = Date.now();
    if (record.pid !== null) {
      const proof = await prove(record);
      if (proof.kind === "ours") {
        ctx.adoptionErrors.delete(uuid);
        // last_healthy_at moves on every pass; the record is rewritten only when more than that changed.
        const comparable = () =>
          JSON.stringify({ ...record, restart: { ...record.restart, last_healthy_at: null } });
        const before = comparable();
        record.workload_pid = proof.health.workload_pid;
        if (proof.health.app_health === "serving") {
          const spawnedAt = record.spawned_at ? Date.parse(record.spawned_at) : now;
          record.restart = afterHealthy(record.restart, spawnedAt, now, ctx.backoff);
        }
        if (comparable() !== before) await ctx.records.write(record);
        return;
      }
      const young =
        record.spawned_at !== null && now - Date.parse(record.spawned_at) < (ctx.opts.spawnGraceMs ?? 10_000);
      if (proof.kind === "silent" && (await processAlive(record.pid))) {
        if (young || (await isRunnerProcess(record.pid, uuid))) {
          if (!young)
            ctx.opts.logger.warn("runner alive but its control socket is silent", { uuid, pid: record.pid });
          return;
        }
      }
      if (proof.kind === "foreign") {
        // Someone else answers on this app's socket path: never adopt it, never signal its pid.
        ctx.adoptionErrors.set(uuid, proof.message);
        ctx.opts.logger.error("control socket is not this app's runner; not adopting", {
          uuid,
          why: proof.message,
        });
      }
      const { restart, parked } = afterFailure(record.restart, now, ctx.backoff);
      // A container outlives its runner like a process does, but a respawned runner adopts it
      // (zero restarts of the app) when it still runs the recorded spec; only a parked app's goes.
      if (proof.kind !== "foreign") await killOrphanWorkload(ctx, record, { keepContainers: !parked });
      record.restart = restart;
      record.crash_looped = parked;
      record.pid = null;
      record.workload_pid = null;
      await ctx.records.write(record);
      ctx.opts.logger.warn(
        parked ? "runner died; parked after repeated failures" : "runner died; respawn scheduled",
        {
          uuid,
          failures: restart.consecutive_failures,
          next_retry_at: restart.next_retry_at,
        },
      );
    }
    if (record.crash_looped || !dueForRetry(record.restart, Date.now())) return;
    if (ctx.adoptionErrors.has(uuid) && (await socketAnswers(record.control_sock))) return;
    await launch(ctx, record);
    ctx.opts.logger.info("respawned runner", { uuid, pid: record.pid });
    ctx.spares?.fill();
  }

  /** A runner this supervisor spawned exited: its app is reconciled now, not at the next pass. */
  runnerExited(uuid: string, pid: number): void {
    if (this.closed) return;
    const { ctx } = this;
    ctx.locks
      .run(uuid, async () => {
        const record = await ctx.records.read(uuid);
        // A runner stopped or replaced on purpose has left its record (or the record moved on).
        if (!this.closed && record && !record.stopped && record.pid === pid) await this.one(uuid);
      })
      .catch((err: unknown) => {
        ctx.opts.logger.error("reconcile after a runner's exit failed", {
          uuid,
          error: (err as Error).message,
        });
      });
  }

  /**
   * Starts an `--app` with no record here, retrying with the restart backoff until it runs; once
   * it has a record it is the passes' to keep.
   */
  async keepStarting(uuid: string, start: (uuid: string) => Promise<StartResult>): Promise<void> {
    const { ctx } = this;
    for (let failures = 0; !this.closed; ) {
      const record = await ctx.records.read(uuid).catch(() => undefined);
      if (record) {
        ctx.opts.logger.info("--app has a runner record; the reconcile loop keeps it", {
          uuid,
          stopped: record.stopped,
        });
        return;
      }
      try {
        const started = await start(uuid);
        ctx.opts.logger.info("started app from the artifact store", {
          uuid,
          artifact_version: started.artifact_version,
          bound_addr: started.bound_addr,
        });
        return;
      } catch (err) {
        failures++;
        const delay = backoffDelay(failures, ctx.backoff.baseMs, ctx.backoff.capMs);
        ctx.opts.logger.warn("could not start --app; retrying", {
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
}
