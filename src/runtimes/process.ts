/**
 * The `process` runtime: a command from the artifact directory (a Node app, a static binary),
 * run in its own process group with HOST/PORT set.
 */
import type { ChildProcess } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import {
  cgroupLimitsAvailable,
  fallbackLimits,
  limitInCgroup,
  type ProcessLimits,
  type WorkloadCgroup,
} from "./cgroup.js";
import {
  ChildWorkload,
  checkCommonSpec,
  checkPort,
  type RuntimeOptions,
  sha256File,
  spawnInGroup,
  workloadEnv,
} from "./child.js";
import { DRAIN_IMPORT } from "./drain-hook.js";
import {
  type BootedAhead,
  GATE_ENV,
  gatedArgs,
  gateReached,
  isAlive,
  isNodeCommand,
  openGate,
} from "./process-boot-ahead.js";
import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "./runtime.js";

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Where command[0] lives: a path (with a slash) is taken relative to the artifact directory; a
 * bare name is looked up on PATH first, then in the artifact directory (so `["app"]` runs the
 * app's own binary when no system command has that name).
 */
export async function resolveCommand(artifactDir: string, name: string): Promise<string | undefined> {
  if (name.includes("/")) {
    const path = isAbsolute(name) ? name : resolve(artifactDir, name);
    return (await isExecutableFile(path)) ? path : undefined;
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const path = join(dir, name);
    if (await isExecutableFile(path)) return path;
  }
  const local = join(artifactDir, name);
  return (await isExecutableFile(local)) ? local : undefined;
}

/**
 * The file that says which version runs: command[0] when it is a file of the artifact, else the
 * first argument naming one (`node server.js` → server.js).
 */
async function entryFile(
  artifactDir: string,
  command: string[],
  resolved: string,
): Promise<string | undefined> {
  const root = resolve(artifactDir);
  const inside = (path: string) => path.startsWith(`${root}/`);
  if (inside(resolved)) return resolved;
  for (const arg of command.slice(1)) {
    if (arg.startsWith("-")) continue;
    const path = resolve(root, arg);
    if (inside(path) && (await isFile(path))) return path;
  }
  return undefined;
}

/**
 * Spawns `file` in its own process group held to `limits`: in a cgroup of its own named after
 * `cgroupName` when the host gives us one, else under the fallback limits (cgroup.ts). A limit
 * the host could not set refuses the start rather than run unlimited. Process workloads and
 * release migrations (src/supervisor/migrate.ts) both start this way.
 */
export async function spawnWithLimits(
  file: string,
  args: string[],
  opts: Parameters<typeof spawnInGroup>[2],
  limits: ProcessLimits,
  cgroupName: string,
): Promise<{ child: ChildProcess; cgroup: WorkloadCgroup | undefined }> {
  const wanted = { memoryMb: limits.memoryMb, vcpus: limits.vcpus };
  const limited = wanted.memoryMb !== undefined || wanted.vcpus !== undefined;
  const useCgroup = limited && (await cgroupLimitsAvailable());
  const run =
    useCgroup || !limited ? { file, args, env: opts.env } : fallbackLimits(file, args, opts.env, wanted);
  const child = await spawnInGroup(run.file, run.args, { ...opts, env: run.env });
  const cgroup =
    useCgroup && child.pid !== undefined ? await limitInCgroup(child.pid, cgroupName, wanted) : undefined;
  if (useCgroup && !cgroup) {
    await new ChildWorkload(child, { host: "127.0.0.1", port: 0 }).stop(2_000);
    throw new TabbifyError("WORKLOAD_START_FAILED", "cannot put the workload in a cgroup for its limits");
  }
  return { child, cgroup };
}

interface StartPlan {
  spec: WorkloadSpec;
  user: WorkloadUser | undefined;
  artifactDir: string;
  command: string[];
  file: string;
  limits: { memoryMb: number | undefined; vcpus: number | undefined };
  env: (port: number) => NodeJS.ProcessEnv;
  key: string;
}

export class ProcessRuntime implements Runtime {
  readonly kind = "process" as const;

  constructor(private readonly options: RuntimeOptions = {}) {}

  async available(): Promise<boolean> {
    return true;
  }

  async validate(spec: WorkloadSpec): Promise<void> {
    await this.check(spec);
  }

  private async check(spec: WorkloadSpec): Promise<{ artifactDir: string; command: string[]; file: string }> {
    checkCommonSpec(spec, this.kind);
    const { artifactDir, command } = spec;
    if (typeof artifactDir !== "string" || artifactDir === "") {
      throw new TabbifyError("SPEC_INVALID", "process runtime needs artifactDir");
    }
    if (!Array.isArray(command) || command.length === 0 || command.some((a) => typeof a !== "string")) {
      throw new TabbifyError("SPEC_INVALID", "process runtime needs command: a non-empty list of strings");
    }
    if (command[0] === "") throw new TabbifyError("SPEC_INVALID", "command[0] is empty");
    for (const field of ["image", "imageArchive", "entry"] as const) {
      if (spec[field] !== undefined)
        throw new TabbifyError("SPEC_INVALID", `process runtime does not take ${field}`);
    }
    if (spec.limits?.timeoutMs !== undefined)
      throw new TabbifyError("SPEC_INVALID", "limits.timeoutMs is a per-request limit of the wasm runtime");
    for (const [name, value] of Object.entries({
      memoryMb: spec.limits?.memoryMb,
      vcpus: spec.limits?.vcpus,
    })) {
      if (value !== undefined && (!Number.isFinite(value) || value <= 0))
        throw new TabbifyError("SPEC_INVALID", `limits.${name} must be a positive number`);
    }
    let dirInfo: Awaited<ReturnType<typeof stat>> | undefined;
    try {
      dirInfo = await stat(artifactDir);
    } catch {
      dirInfo = undefined;
    }
    if (!dirInfo?.isDirectory()) {
      throw new TabbifyError("ARTIFACT_NOT_FOUND", `artifact directory ${artifactDir} does not exist`);
    }
    const file = await resolveCommand(artifactDir, command[0]!);
    if (!file) {
      throw new TabbifyError(
        "ARTIFACT_NOT_FOUND",
        `command "${command[0]}" is neither an executable in ${artifactDir} nor on PATH`,
      );
    }
    return { artifactDir: resolve(artifactDir), command, file };
  }

  /** A Node app's next workload, booted ahead to its gate while the app sleeps (process-boot-ahead.ts). */
  private ahead: BootedAhead | undefined;
  private aheadBooting: Promise<void> | undefined;

  async start(spec: WorkloadSpec, port: number, user?: WorkloadUser): Promise<Workload> {
    checkPort(port);
    await this.aheadBooting;
    const ahead = this.ahead;
    this.ahead = undefined;
    // The wake passes the very spec the app slept with: its checks were done when it was booted.
    if (
      ahead &&
      ahead.spec === spec &&
      ahead.user === user &&
      isAlive(ahead.child) &&
      openGate(ahead.child)
    ) {
      await this.stamp(ahead.workload, ahead.entry);
      return ahead.workload;
    }
    const plan = await this.plan(spec, user);
    if (ahead) {
      if (ahead.key === plan.key && isAlive(ahead.child) && openGate(ahead.child)) {
        await this.stamp(ahead.workload, ahead.entry);
        return ahead.workload;
      }
      // Booted for another spec (a deploy came while the app slept), or gone: started afresh.
      await ahead.workload.stop(2_000).catch(() => {});
    }
    const { workload, entry } = await this.spawnPlan(plan, port, false);
    await this.stamp(workload, entry);
    return workload;
  }

  /**
   * Boots the next workload of a sleeping Node app ahead, to its gate: none of the app's code
   * runs until the start that takes it. Other commands have nothing to boot ahead. Resolves once
   * Node has booted (or could not); best effort.
   */
  async prewarmFor(spec: WorkloadSpec, user?: WorkloadUser): Promise<void> {
    if (this.ahead || this.aheadBooting) return;
    this.aheadBooting = (async () => {
      const plan = await this.plan(spec, user);
      if (!isNodeCommand(plan.file)) return;
      const booted = await this.spawnPlan(plan, await freeLoopbackPort(), true);
      this.ahead = booted.ahead;
      if (!(await gateReached(booted.ahead!.child, 30_000))) {
        this.ahead = undefined;
        await booted.workload.stop(2_000).catch(() => {});
      }
    })()
      .catch(() => {})
      .finally(() => {
        this.aheadBooting = undefined;
      });
    await this.aheadBooting;
  }

  async discardPrewarmed(): Promise<void> {
    await this.aheadBooting;
    const ahead = this.ahead;
    this.ahead = undefined;
    await ahead?.workload.stop(2_000).catch(() => {});
  }

  /** Everything a start decides before it spawns; `key` says which spec a booted-ahead workload fits. */
  private async plan(spec: WorkloadSpec, user: WorkloadUser | undefined): Promise<StartPlan> {
    const { artifactDir, command, file } = await this.check(spec);
    const limits = { memoryMb: spec.limits?.memoryMb, vcpus: spec.limits?.vcpus };
    const env = (port: number) =>
      workloadEnv(
        spec.releaseManifest ? { ...spec.env, TABBIFY_RELEASE_MANIFEST: spec.releaseManifest } : spec.env,
        port,
        user,
        spec.dataDir,
      );
    const { PORT: _port, ...portless } = env(0);
    const key = JSON.stringify({
      file,
      command,
      artifactDir,
      env: portless,
      user,
      limits,
      app: spec.appUuid,
    });
    return { spec, user, artifactDir, command, file, limits, env, key };
  }

  private async spawnPlan(
    plan: StartPlan,
    port: number,
    gated: boolean,
  ): Promise<{ workload: ChildWorkload; entry: string | undefined; ahead?: BootedAhead }> {
    const { spec, user, artifactDir, command, file, limits } = plan;
    const env = plan.env(port);
    if (gated) env[GATE_ENV] = "3";
    const { child, cgroup } = await spawnWithLimits(
      file,
      drainableArgs(file, gated ? gatedArgs(command.slice(1)) : command.slice(1)),
      { cwd: artifactDir, env, output: this.options.output, user, readyPipe: gated },
      limits,
      `${spec.appUuid ?? "app"}-${port}`,
    );
    const workload = new ChildWorkload(
      child,
      { host: "127.0.0.1", port },
      undefined,
      cgroup && {
        reason: async () => ((await cgroup.oomKilled()) ? "oom" : undefined),
        release: () => cgroup.remove(),
        throttled: () => cgroup.throttled(),
      },
    );
    let entry: string | undefined;
    try {
      entry = await entryFile(artifactDir, command, file);
    } catch (err) {
      await workload.stop(2_000);
      throw err;
    }
    return {
      workload,
      entry,
      ...(gated ? { ahead: { key: plan.key, spec, user, workload, child, entry } } : {}),
    };
  }

  /** Hashed while the workload boots: reading the file first would only delay its start. */
  private async stamp(workload: ChildWorkload, entry: string | undefined): Promise<void> {
    try {
      if (entry) workload.version = await sha256File(entry);
    } catch (err) {
      await workload.stop(2_000);
      throw err;
    }
  }
}

/**
 * A Node command gets the drain hook (drain-hook.ts), so a swap on the kernel hop can close its
 * keep-alive connections without losing a request; other programs are started as given.
 */
function drainableArgs(file: string, args: string[]): string[] {
  return isNodeCommand(file) ? ["--import", DRAIN_IMPORT, ...args] : args;
}
