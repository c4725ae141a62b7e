import { backoffDelay } from "../core/backoff.js";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { checkAppProbes } from "../runtimes/app-probes.js";
import type {
  Runtime,
  RuntimeKind,
  Upstream,
  Workload,
  WorkloadExit,
  WorkloadSpec,
  WorkloadUser,
} from "../runtimes/runtime.js";
import type { ControlReply, ControlRequest, HealthReply, RunnerState } from "./control.js";
import { HopSwitch, type KernelHop } from "./kernel-hop.js";
import { AppProxy, type ProxyTarget } from "./proxy.js";
import { IdleTimer } from "./scale-to-zero.js";
import { discardPrewarmedWorkload, prewarmWorkload, startWorkload } from "./workload.js";

/**
 * One app: owns the app address, runs the workload through its runtime, restarts it after a
 * crash (with backoff), swaps versions without dropping requests, and stops it gracefully.
 * It never depends on the supervisor being alive.
 */

export interface RunnerOptions {
  uuid: string;
  /** The app's identity address (its ULA), reported in health. */
  appUla: string;
  /** Where the proxy binds: the app address (ULA or loopback twin) and APP_PORT. */
  bindHost: string;
  bindPort: number;
  spec: WorkloadSpec;
  /** The app's own user, chosen by the supervisor; absent, workloads run as the runner does. */
  user?: WorkloadUser;
  runtimeFor: (kind: RuntimeKind) => Runtime | Promise<Runtime>;
  /**
   * The first workload, already being started by the caller (see startWorkload): the runner's
   * entry point starts it before loading the rest of the runner, so the two boot side by side.
   * Without it, start() starts one.
   */
  firstWorkload?: Promise<Workload>;
  waitHealthy: (
    upstream: Upstream,
    opts: { timeoutMs: number; path?: string; exited?: Workload["exited"]; listening?: boolean },
  ) => Promise<void>;
  logger: Logger;
  /** How long a new workload may take to answer its health check. */
  healthTimeoutMs?: number;
  /** How long a swap waits for in-flight requests on the old workload before stopping it. */
  drainTimeoutMs?: number;
  stopGraceMs?: number;
  /** Crash restarts: first delay, doubling up to the cap. */
  restartBaseMs?: number;
  restartCapMs?: number;
  /** A workload healthy for this long before crashing restarts at the base delay again. */
  stableWindowMs?: number;
  /**
   * Told each time a workload takes over, so the pid can be kept where the supervisor finds it:
   * if the runner is killed outright, its workload (a process group of its own) lives on.
   */
  onWorkload?: (pid: number | undefined) => void;
  /**
   * The app's element in the supervisor's nftables table (kernel-hop.ts): when set, the kernel
   * carries new connections straight to the workload and the userspace proxy only answers while
   * no workload serves.
   */
  kernelHop?: KernelHop;
  /** How long a swap waits for kernel-carried connections to the old workload to close (5 s). */
  kernelDrainMs?: number;
  /** The app address's socket, handed over by the runner this one succeeds (succession.ts). */
  listenHandle?: object;
}

/**
 * How long a kernel-hop swap waits for the old workload's connections to close. A workload with
 * the drain hook closes them within about a second; one without it keeps a busy keep-alive
 * connection until it is stopped.
 */
const KERNEL_DRAIN_MS = 5_000;

interface Running {
  workload: Workload;
  spec: WorkloadSpec;
  healthySince: number;
}

export class Runner {
  private readonly proxy: AppProxy;
  private readonly hop: HopSwitch;
  private running: Running | undefined;
  private spec: WorkloadSpec;
  private state: RunnerState = "starting";
  private unavailableReason: string | undefined = "the workload is starting";
  private restarts = 0;
  private consecutiveCrashes = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Why the last workload was ended by a limit (oom, fuel), for health and status. */
  private lastLimitReason: WorkloadExit["reason"];
  private readonly idle: IdleTimer;
  /** Serializes start, restart, deploy and stop: one workload transition at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: RunnerOptions) {
    this.spec = opts.spec;
    this.proxy = new AppProxy(opts.logger.child("proxy"));
    this.proxy.onLimit = (reason) => {
      this.lastLimitReason = reason;
    };
    this.idle = new IdleTimer(
      this.proxy,
      () => this.spec.lifecycle,
      () => this.sleepIfIdle(),
    );
    this.hop = new HopSwitch(opts.kernelHop, (message, fields) => opts.logger.warn(message, fields));
  }

  get boundAddr(): string {
    const h = this.opts.bindHost;
    return h.includes(":") ? `[${h}]:${this.opts.bindPort}` : `${h}:${this.opts.bindPort}`;
  }

  /**
   * Binds the app address, then starts the first workload. Throws if it never gets healthy. On a
   * socket handed over by a predecessor, which still serves it, it listens only once the workload
   * is healthy, so it never answers "starting" to a request the predecessor would have served.
   */
  async start(): Promise<void> {
    const first = this.opts.firstWorkload;
    const handed = this.opts.listenHandle;
    try {
      if (!handed) await this.proxy.listen(this.opts.bindHost, this.opts.bindPort);
    } catch (err) {
      // Nothing may be left running by a runner that cannot serve.
      await first?.then(
        (w) => w.stop(2_000),
        () => {},
      );
      throw err;
    }
    await this.serialized(async () => {
      const running = await this.launch(this.spec, first);
      await this.install(running);
      this.state = "running";
    });
    if (handed) await this.proxy.listen(this.opts.bindHost, this.opts.bindPort, handed);
    this.idle.start();
  }

  health(): HealthReply {
    const current = this.running;
    const reply: HealthReply = {
      reply: "health",
      state: this.state,
      app_ula: this.opts.appUla,
      app_uuid: this.opts.uuid,
      pid: process.pid,
      workload_pid: current?.workload.pid ?? null,
      runtime: (current?.spec ?? this.spec).runtime,
      version: current?.workload.version ?? null,
      bound_addr: this.boundAddr,
      app_health: this.proxy.current ? "serving" : "unavailable",
      restarts: this.restarts,
      ...this.hop.current,
    };
    if (this.lastLimitReason) reply.last_limit_reason = this.lastLimitReason;
    const egress = current?.workload.egress;
    if (egress) {
      reply.egress = egress.enforced_by;
      if (egress.reason) reply.egress_reason = egress.reason;
    }
    if (current) {
      reply.workload_host = current.workload.upstream.host;
      reply.workload_port = current.workload.upstream.port;
    }
    const image = (current?.spec ?? this.spec).image;
    if (image) reply.image_ref = image;
    // A sleeping on_request app serves: its first request wakes it (scale-to-zero.ts).
    if (this.state === "idle") reply.app_health = "serving";
    else if (!this.proxy.current && this.unavailableReason) reply.app_health_reason = this.unavailableReason;
    return reply;
  }

  /** The control-socket handler. `stop` is answered before the process exits (see onStopped). */
  async handle(req: ControlRequest): Promise<ControlReply> {
    switch (req.cmd) {
      case "ping":
        return { reply: "pong" };
      case "health":
        return this.health();
      case "stop":
        await this.stop();
        return { reply: "ok" };
      case "deploy": {
        const version = await this.deploy(req.spec);
        return { reply: "ok", version };
      }
      case "assign":
        return {
          reply: "err",
          message: `this runner already runs app ${this.opts.uuid}; only a spare takes assign`,
        };
      case "handoff":
        // The runner's entry point owns the process, so it carries handoffs out (succession.ts).
        return { reply: "err", message: "this runner cannot hand its app over" };
    }
  }

  /**
   * Zero-downtime swap: the new workload starts on another private port and must pass its health
   * check; then new requests go to it, the old one drains and stops. If the new one fails, the old
   * one keeps serving and this throws why.
   */
  deploy(spec: WorkloadSpec): Promise<string | null> {
    return this.serialized(async () => {
      if (this.stopping) throw new TabbifyError("RUNNER_STOPPING", "the runner is stopping");
      if (spec.stateful || this.spec.stateful) return this.swapStateful(spec);
      const next = await this.launch(spec);
      const previous = this.running;
      const oldTarget = await this.install(next);
      this.spec = spec;
      this.consecutiveCrashes = 0;
      this.state = "running";
      this.opts.logger.info("swapped to new workload", {
        workload_pid: next.workload.pid,
        version: next.workload.version,
      });
      if (previous) await this.retire(previous, oldTarget);
      return next.workload.version ?? null;
    });
  }

  /**
   * A stateful app's swap: two workloads never write its data at once, so the old one drains and
   * stops before the new one starts (requests meanwhile get 503 with Retry-After). If the new one
   * fails, the old spec is started again and this throws why.
   */
  private async swapStateful(spec: WorkloadSpec): Promise<string | null> {
    const previous = this.running;
    this.running = undefined;
    const oldTarget = this.proxy.unavailable("the app is restarting onto a new version");
    this.unavailableReason = "the app is restarting onto a new version";
    // New connections meet the runner's 503 with Retry-After while no workload serves.
    const viaKernel = this.hop.current.hop === "kernel";
    await this.hop.off();
    if (previous) await this.retire(previous, oldTarget, viaKernel);
    try {
      const next = await this.launch(spec);
      await this.install(next);
      this.spec = spec;
      this.consecutiveCrashes = 0;
      this.state = "running";
      this.opts.logger.info("swapped stateful app (stop, then start)", { workload_pid: next.workload.pid });
      return next.workload.version ?? null;
    } catch (err) {
      if (previous) {
        const back = await this.launch(this.spec).catch(() => undefined);
        if (back) await this.install(back);
        else this.scheduleRestart(this.opts.restartBaseMs ?? 1_000);
      }
      throw err;
    }
  }

  /** Scale to zero: stops the workload of an idle on_request app; the next request wakes it. */
  private sleepIfIdle(): Promise<void> {
    return this.serialized(async () => {
      const running = this.running;
      if (this.stopping || !running || !this.idle.expired()) return;
      this.running = undefined;
      this.proxy.sleep(() => this.wake());
      // The next connection must reach the runner's listener, which wakes the app.
      await this.hop.off();
      this.opts.logger.info("idle: stopping the workload until the next request", {
        idle_timeout_sec: this.spec.lifecycle?.idleTimeoutSec,
      });
      await running.workload.stop(this.opts.stopGraceMs ?? 10_000);
      this.opts.onWorkload?.(undefined);
      // A runtime that can boot ahead does so now, so the wake skips that boot: wasm a standby
      // host that holds no app yet, process a Node app's next workload stopped at its gate
      // before any of its code runs. A request that comes meanwhile waits for it (the wake is
      // queued behind this step), which is still faster than a boot of its own.
      const runtime = await this.opts.runtimeFor(this.spec.runtime);
      await prewarmWorkload(runtime, this.spec, this.opts.user).catch(() => {});
      // Idle once nothing of the old workload is left and the next wake's boot is ready.
      this.state = "idle";
    });
  }

  private waking: Promise<void> | undefined;

  /** Starts a workload for a sleeping app; concurrent first requests share one start. */
  private wake(): Promise<void> {
    this.waking ??= this.serialized(async () => {
      if (this.stopping || this.running) return;
      const started = Date.now();
      // This spec passed its HTTP check when it started: a port that listens takes the held request.
      const running = await this.launch(this.spec, undefined, { wake: true });
      await this.install(running);
      this.state = "running";
      this.opts.logger.info("woken by a request", {
        workload_pid: running.workload.pid,
        wake_ms: Date.now() - started,
      });
    }).finally(() => {
      this.waking = undefined;
    });
    return this.waking;
  }

  /** The spec the app runs now (the last swap's), for a successor runner. */
  get currentSpec(): WorkloadSpec {
    return this.spec;
  }

  /** The app address's listening server, for a successor runner. */
  get listener(): object {
    return this.proxy.listener;
  }

  /** Why this runner cannot hand its app to a successor now; undefined when it can. */
  successionBlocker(): string | undefined {
    if (this.spec.stateful) return "a stateful app's data is never used by two workloads at once";
    if (this.stopping || this.state !== "running") return `the runner is ${this.state}`;
    return undefined;
  }

  /**
   * A successor runner serves the app address now (on the same socket): accept no more, let the
   * requests under way here finish, then stop this runner's workload. Unlike stop(), leaves the
   * app's workload pid file and any kernel mapping alone: they are the successor's.
   */
  retireForSuccessor(): Promise<void> {
    this.beginStopping();
    return this.serialized(async () => {
      const previous = this.running;
      this.running = undefined;
      const drainMs = this.opts.drainTimeoutMs ?? 30_000;
      await Promise.all([
        this.proxy.retire(drainMs),
        previous && this.hop.current.hop === "kernel" ? this.drainKernelFlows(previous, drainMs) : undefined,
      ]);
      if (previous) await previous.workload.stop(this.opts.stopGraceMs ?? 10_000);
    });
  }

  /** No restart, no idle sleep, no new work: the runner is on its way out. */
  private beginStopping(): void {
    this.stopping = true;
    this.state = "stopping";
    this.idle.stop();
    if (this.restartTimer) clearTimeout(this.restartTimer);
  }

  /** Stops the workload gracefully and releases the app address. Idempotent. */
  stop(): Promise<void> {
    this.beginStopping();
    return this.serialized(async () => {
      const previous = this.running;
      this.running = undefined;
      await this.hop.off();
      const target = this.proxy.unavailable("the runner is stopping");
      if (previous) {
        if (target) await target.drained(Math.min(this.opts.drainTimeoutMs ?? 30_000, 5_000));
        await previous.workload.stop(this.opts.stopGraceMs ?? 10_000);
      }
      // What a sleeping app booted ahead for its wake (see sleepIfIdle) goes with it.
      await Promise.resolve(this.opts.runtimeFor(this.spec.runtime))
        .then((r) => discardPrewarmedWorkload(r))
        .catch(() => {});
      await this.proxy.close();
    });
  }

  private serialized<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step, step);
    this.queue = run.catch(() => {});
    return run;
  }

  /** Starts a workload on a fresh private port and waits for it to answer, or stops it and throws. */
  private async launch(
    spec: WorkloadSpec,
    started?: Promise<Workload>,
    how: { wake?: boolean } = {},
  ): Promise<Running> {
    const workload = await (started ??
      startWorkload(await this.opts.runtimeFor(spec.runtime), spec, this.opts.user));
    const timeoutMs = this.opts.healthTimeoutMs ?? 25_000;
    let exitedEarly: WorkloadExit | undefined;
    const exited = workload.exited.then((how) => {
      exitedEarly = how;
    });
    try {
      await Promise.race([
        // `exited` also ends the health poll itself, so nothing keeps probing a dead workload.
        (async () => {
          const deadline = performance.now() + timeoutMs;
          const probes = spec.probes;
          await this.opts.waitHealthy(workload.upstream, {
            timeoutMs,
            exited: workload.exited,
            ...(probes?.healthz ? { path: probes.healthz } : {}),
            // Declared probes still gate a wake: they say when the app is ready, not its port.
            ...(how.wake && !probes ? { listening: true } : {}),
          });
          // Declared probes gate the swap: the new workload takes no request until they pass.
          if (probes) await checkAppProbes(workload.upstream, probes, deadline);
        })(),
        exited.then(() => {
          const reason = exitedEarly?.reason;
          if (reason) this.lastLimitReason = reason;
          // A limit that ended it is named, so a deploy's result says why (e.g. over memory_mb).
          throw new TabbifyError(
            "WORKLOAD_EXITED",
            `the workload exited before it answered (code ${exitedEarly?.code ?? "none"}, signal ${exitedEarly?.signal ?? "none"}${reason ? `, over its limit (reason ${reason})` : ""})`,
            reason ? { limit_reason: reason } : undefined,
          );
        }),
      ]);
    } catch (err) {
      // Asked before the stop: a workload its vcpus cap held back past the deadline is reported so.
      const heldBack = !exitedEarly && (await workload.cpuThrottled?.().catch(() => false));
      await workload.stop(2_000).catch(() => {});
      if (heldBack) {
        this.lastLimitReason = "cpu";
        throw new TabbifyError(
          "WORKLOAD_UNHEALTHY",
          `the workload did not answer its health check within ${timeoutMs} ms, held back by its vcpus cap (reason cpu): ${(err as Error).message}`,
          { limit_reason: "cpu" },
        );
      }
      if (err instanceof TabbifyError) throw err;
      throw new TabbifyError(
        "WORKLOAD_UNHEALTHY",
        `the workload did not answer its health check within ${timeoutMs} ms: ${(err as Error).message}`,
      );
    }
    return { workload, spec, healthySince: Date.now() };
  }

  /**
   * Makes `running` the workload new connections go to (the kernel's mapping first, then the
   * userspace proxy, whose switch is what health reports as serving: a caller told "serving" never
   * meets a mapping to the workload before); returns the proxy target it replaced.
   */
  private async install(running: Running): Promise<ProxyTarget | undefined> {
    this.running = running;
    running.workload.exited.then((how) => this.onExit(running, how));
    await this.hop.to(
      running.workload.upstream,
      this.opts.bindHost,
      // Its idle clock counts the requests the runner forwards: the kernel would hide them.
      running.spec.lifecycle?.mode === "on_request"
        ? "an on_request app's idle clock counts the requests its runner forwards"
        : undefined,
    );
    // It died meanwhile: onExit took it out and a restart is on its way.
    if (this.running !== running) return undefined;
    const previous = this.proxy.switchTo(running.workload.upstream);
    // The idle clock starts with each workload, whenever the last request was.
    this.proxy.lastActivity = Date.now();
    this.unavailableReason = undefined;
    this.opts.onWorkload?.(running.workload.pid);
    return previous;
  }

  /**
   * Waits (bounded) for requests still under way on the old workload, then stops it. On the kernel
   * hop, clients' connections end in the old workload itself: it is asked to close them gracefully
   * (drain-hook.ts) and keeps serving until none is left or the kernel drain timeout passes.
   */
  private async retire(
    previous: Running,
    oldTarget: ProxyTarget | undefined,
    viaKernel = this.hop.current.hop === "kernel",
  ): Promise<void> {
    const drainMs = this.opts.drainTimeoutMs ?? 30_000;
    const [drained, flowsGone] = await Promise.all([
      oldTarget ? oldTarget.drained(drainMs) : true,
      viaKernel ? this.drainKernelFlows(previous, drainMs) : true,
    ]);
    if (!drained || !flowsGone)
      this.opts.logger.warn("old workload still busy after the drain timeout; stopping it anyway", {
        ...(flowsGone ? {} : { kernel_connections_left: true }),
      });
    await previous.workload.stop(this.opts.stopGraceMs ?? 10_000);
  }

  /** True once no kernel-carried connection is left on the old workload. */
  private drainKernelFlows(previous: Running, drainMs: number): Promise<boolean> {
    previous.workload.drain?.();
    return this.hop.drained(
      previous.workload.upstream,
      Math.min(drainMs, this.opts.kernelDrainMs ?? KERNEL_DRAIN_MS),
    );
  }

  private onExit(running: Running, how: WorkloadExit): void {
    if (this.running !== running || this.stopping) return;
    if (how.reason) this.lastLimitReason = how.reason;
    this.running = undefined;
    this.restarts += 1;
    const stableWindowMs = this.opts.stableWindowMs ?? 30_000;
    if (Date.now() - running.healthySince >= stableWindowMs) this.consecutiveCrashes = 0;
    this.consecutiveCrashes += 1;
    const delay = this.restartDelay();
    const limit = how.reason ? `, over its limit (reason ${how.reason})` : "";
    const reason = `the workload exited (code ${how.code ?? "none"}, signal ${how.signal ?? "none"}${limit}); restarting in ${delay} ms`;
    this.proxy.unavailable(reason);
    // Back to the userspace listener, which answers 503 with the reason instead of a refused connect.
    void this.serialized(() => (this.running ? Promise.resolve() : this.hop.off()));
    this.unavailableReason = reason;
    this.state = "restarting";
    this.opts.logger.warn("workload exited", {
      code: how.code,
      signal: how.signal,
      ...(how.reason ? { reason: how.reason } : {}),
      restart_in_ms: delay,
    });
    this.scheduleRestart(delay);
  }

  /** The delay before the restart that follows the current run of crashes. */
  private restartDelay(): number {
    return backoffDelay(
      this.consecutiveCrashes,
      this.opts.restartBaseMs ?? 1_000,
      this.opts.restartCapMs ?? 30_000,
    );
  }

  private scheduleRestart(delayMs: number): void {
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.serialized(async () => {
        if (this.stopping || this.running) return;
        try {
          const running = await this.launch(this.spec);
          await this.install(running);
          this.state = "running";
          this.opts.logger.info("workload restarted", { workload_pid: running.workload.pid });
        } catch (err) {
          this.consecutiveCrashes += 1;
          const delay = this.restartDelay();
          this.unavailableReason = `restart failed: ${(err as Error).message}; retrying in ${delay} ms`;
          this.opts.logger.warn("workload restart failed", {
            error: (err as Error).message,
            retry_in_ms: delay,
          });
          this.scheduleRestart(delay);
        }
      });
    }, delayMs);
  }
}
