/**
 * The `wasm` runtime: a WAGI/CGI-style WASI preview1 module served per request by a child
 * process (wasm-host.js), so a wasm workload has a pid, an exit and a stop like any other.
 *
 * prewarm() boots a standby host (node plus its first worker thread, most of a cold start) before
 * any app is known; the next start() whose memory limit matches hands it the app over its stdin.
 */
import type { ChildProcess } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TabbifyError } from "../core/errors.js";
import {
  ChildWorkload,
  checkCommonSpec,
  checkPort,
  type RuntimeOptions,
  spawnInGroup,
  workloadEnv,
} from "./child.js";
import { DRAIN_IMPORT } from "./drain-hook.js";
import {
  DEFAULT_DATA_MOUNT,
  type Runtime,
  type Workload,
  type WorkloadSpec,
  type WorkloadUser,
} from "./runtime.js";
import type { HostStartConfig } from "./wasm-host.js";
import { checkWasiModule, WASM_PAGE_BYTES } from "./wasm-module.js";

export const DEFAULT_WASM_TIMEOUT_MS = 10_000;
export const DEFAULT_WASM_MEMORY_MB = 64;
const hostScript = fileURLToPath(new URL("./wasm-host.js", import.meta.url));
/** How long an unused standby gets to exit on SIGTERM before it is killed. */
const STANDBY_GRACE_MS = 2_000;
/** How long prewarm() waits at most for a standby to say it has booted. */
const STANDBY_READY_MS = 10_000;

/** The `--wasm-max-mem-pages` a host runs with for a memory limit: fixed at boot, so a standby fits one limit. */
const maxMemPagesFor = (memoryMb: number) => Math.ceil((memoryMb * 1024 * 1024) / WASM_PAGE_BYTES);

/** Node's flags and the host script, then the host's own arguments. */
const hostArgs = (maxMemPages: number, hostOptions: string[]) => [
  // Belt and braces: V8 caps every wasm memory in the host, whatever the module declares.
  `--wasm-max-mem-pages=${maxMemPages}`,
  "--disable-warning=ExperimentalWarning",
  // The host's HTTP server drains like a Node app's on a kernel-hop swap (drain-hook.ts).
  "--import",
  DRAIN_IMPORT,
  hostScript,
  ...hostOptions,
];

/** A wasm host process waiting on its stdin for the one app it will serve (booted ahead or just now). */
interface HostProcess {
  child: ChildProcess;
  maxMemPages: number;
  /** Set when the process has exited, as `exit` resolves. */
  gone: boolean;
  exit: Promise<void>;
  /** A standby: resolves once it has booted (it says so on fd 3) or exited. */
  ready: Promise<void>;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    // ESRCH: the group is already gone, which is what we wanted.
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** SIGTERM the standby's group, SIGKILL after the grace; resolves once it has exited. Never rejects. */
async function stopStandby(standby: HostProcess): Promise<void> {
  const pid = standby.child.pid;
  if (pid === undefined || standby.gone) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    signalGroup(pid, "SIGTERM");
    const graceOver = new Promise<"grace-over">((resolve) => {
      timer = setTimeout(() => resolve("grace-over"), STANDBY_GRACE_MS);
    });
    if ((await Promise.race([standby.exit, graceOver])) === "grace-over") signalGroup(pid, "SIGKILL");
  } catch {
    // Not ours to signal any more (EPERM): nothing else to try; waiting would never end.
    return;
  } finally {
    clearTimeout(timer);
  }
  await standby.exit;
}

interface CheckedSpec {
  modulePath: string;
  bytes: Buffer;
  timeoutMs: number;
  memoryMb: number;
}

export class WasmRuntime implements Runtime {
  readonly kind = "wasm" as const;

  /** Booted by prewarm() and not yet taken by start() or discardPrewarmed(). */
  private standby: HostProcess | undefined;
  private prewarming: Promise<void> | undefined;
  private discarding: Promise<void> = Promise.resolve();

  constructor(private readonly options: RuntimeOptions & { workers?: number } = {}) {}

  async available(): Promise<boolean> {
    return true;
  }

  async validate(spec: WorkloadSpec): Promise<void> {
    await this.check(spec);
  }

  private async check(spec: WorkloadSpec): Promise<CheckedSpec> {
    checkCommonSpec(spec, this.kind);
    const { artifactDir, entry, limits } = spec;
    if (typeof artifactDir !== "string" || artifactDir === "") {
      throw new TabbifyError("SPEC_INVALID", "wasm runtime needs artifactDir");
    }
    if (typeof entry !== "string" || entry === "") {
      throw new TabbifyError("SPEC_INVALID", "wasm runtime needs entry: the module file in artifactDir");
    }
    for (const field of ["command", "image", "imageArchive"] as const) {
      if (spec[field] !== undefined)
        throw new TabbifyError("SPEC_INVALID", `wasm runtime does not take ${field}`);
    }
    const timeoutMs = limits?.timeoutMs ?? DEFAULT_WASM_TIMEOUT_MS;
    const memoryMb = limits?.memoryMb ?? DEFAULT_WASM_MEMORY_MB;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new TabbifyError("SPEC_INVALID", "limits.timeoutMs must be a positive integer");
    }
    if (!Number.isFinite(memoryMb) || memoryMb <= 0 || memoryMb > 4096) {
      throw new TabbifyError("SPEC_INVALID", "limits.memoryMb must be in (0, 4096]");
    }
    const root = resolve(artifactDir);
    const modulePath = resolve(root, entry);
    if (isAbsolute(entry) || !modulePath.startsWith(`${root}/`)) {
      throw new TabbifyError("SPEC_INVALID", `entry "${entry}" must be a path inside artifactDir`);
    }
    const info = await stat(modulePath).catch(() => undefined);
    if (!info?.isFile())
      throw new TabbifyError("ARTIFACT_NOT_FOUND", `wasm module ${modulePath} does not exist`);
    const bytes = await readFile(modulePath);
    await checkWasiModule(bytes, memoryMb);
    return { modulePath, bytes, timeoutMs, memoryMb };
  }

  async start(spec: WorkloadSpec, port: number, user?: WorkloadUser): Promise<Workload> {
    checkPort(port);
    const checked = await this.check(spec);
    const maxMemPages = maxMemPagesFor(checked.memoryMb);
    let host = await this.takeStandby();
    if (!host || host.gone || host.maxMemPages !== maxMemPages) {
      // A standby that cannot serve this spec is stopped alongside the fresh host's boot.
      const stopping = host && stopStandby(host);
      try {
        host = await this.spawnHost(maxMemPages, false);
      } finally {
        await stopping;
      }
      if (!host) throw new TabbifyError("WORKLOAD_START_FAILED", "cannot start the wasm host (node)");
    }
    const workload = this.handOver(host, spec, checked, port, user);
    // Hashed while the host boots; loading node:crypto before the spawn would delay it.
    workload.version = (await import("../core/digest.js")).digestOf(checked.bytes);
    return workload;
  }

  /**
   * Gives a waiting host its app: from here on it is that app's workload. A host may have booted
   * before its app was known (a standby), so it switches to the app's user itself once it has
   * read the config, before it loads the module.
   */
  private handOver(
    host: HostProcess,
    spec: WorkloadSpec,
    checked: CheckedSpec,
    port: number,
    user: WorkloadUser | undefined,
  ): ChildWorkload {
    const upstream = { host: "127.0.0.1", port };
    const config: HostStartConfig = {
      module: checked.modulePath,
      timeoutMs: checked.timeoutMs,
      memoryMb: checked.memoryMb,
      ...upstream,
      env: spec.env ?? {},
      cwd: resolve(spec.artifactDir!),
    };
    if (spec.dataDir) {
      const guest = spec.dataMount ?? DEFAULT_DATA_MOUNT;
      config.preopens = { [guest]: spec.dataDir };
      config.env = { ...config.env, TABBIFY_DATA_DIR: guest };
    }
    if (user) {
      config.uid = user.uid;
      config.gid = user.gid;
    }
    if (this.options.workers !== undefined) config.workers = this.options.workers;
    // vcpus caps how many requests run at once, each on a worker thread of its own: at most that many CPUs.
    if (spec.limits?.vcpus) config.workers = Math.max(1, Math.floor(spec.limits.vcpus));
    const workload = new ChildWorkload(host.child, upstream);
    // Should the host die just now, the write fails quietly and `exited` reports the death.
    host.child.stdin!.end(`${JSON.stringify(config)}\n`);
    return workload;
  }

  /**
   * Boots a standby host: node, the host's modules and its first worker thread, everything of a
   * start that does not depend on the app. Never rejects: without a standby, start() boots cold.
   */
  async prewarm(): Promise<void> {
    if (this.standby && !this.standby.gone) return;
    this.prewarming ??= this.bootStandby().finally(() => {
      this.prewarming = undefined;
    });
    await this.prewarming;
  }

  private async bootStandby(): Promise<void> {
    const standby = await this.spawnHost(maxMemPagesFor(DEFAULT_WASM_MEMORY_MB), true);
    if (!standby) return;
    this.standby = standby;
    standby.exit.then(() => {
      // A standby that dies unused is forgotten: the next start boots cold.
      if (this.standby === standby) this.standby = undefined;
    });
    // Loaded now so that start() does not load node:crypto on the prewarmed path.
    await import("../core/digest.js");
    // Done once the host has booted, so that a caller which waits for prewarm() (the runner,
    // before it reports an app idle) knows the next start() skips the whole boot.
    await standby.ready;
  }

  /**
   * Spawns a host that waits for its app's config on stdin: at once (a cold start) or whenever an
   * app comes (`standby`: booted ahead, and quietly gone if none ever does). The app's env, which
   * may hold secrets, thus never shows in the host's argv or environment. Undefined if node
   * cannot be spawned.
   */
  private async spawnHost(maxMemPages: number, standby: boolean): Promise<HostProcess | undefined> {
    // The basics every workload gets; HOST, PORT and the app's env arrive on stdin with the app.
    const env = workloadEnv(undefined, 0);
    delete env.HOST;
    delete env.PORT;
    let child: ChildProcess;
    try {
      child = await spawnInGroup(process.execPath, hostArgs(maxMemPages, standby ? ["--standby"] : []), {
        cwd: "/",
        env,
        output: this.options.output,
        stdin: "pipe",
        readyPipe: standby,
      });
    } catch {
      return undefined;
    }
    const host: HostProcess = {
      child,
      maxMemPages,
      gone: false,
      exit: Promise.resolve(),
      ready: Promise.resolve(),
    };
    host.exit = new Promise<void>((resolveExit) => {
      child.once("exit", () => {
        host.gone = true;
        resolveExit();
      });
    });
    const readyPipe = child.stdio[3];
    if (readyPipe) {
      // The host writes one line and closes fd 3 once booted; an exit closes it too.
      host.ready = new Promise<void>((resolveReady) => {
        // Bounded: a host that never says so (hung in its boot) must not hold up a start or a
        // discard; the start then waits on its health check like any other.
        setTimeout(resolveReady, STANDBY_READY_MS).unref();
        readyPipe.once("data", () => resolveReady());
        readyPipe.once("close", () => resolveReady());
        readyPipe.once("error", () => resolveReady());
      });
      host.ready.then(() => readyPipe.destroy());
    }
    // A dead host's pipe fails on write (EPIPE); its exit is what reports the death.
    child.stdin!.on("error", () => {});
    return host;
  }

  /** Stops a standby no start() took, and resolves once it has exited. Idempotent. */
  async discardPrewarmed(): Promise<void> {
    await this.prewarming;
    const standby = this.standby;
    this.standby = undefined;
    if (standby) this.discarding = stopStandby(standby);
    await this.discarding;
  }

  /** The standby, at most once: whoever takes it either hands it an app or stops it. */
  private async takeStandby(): Promise<HostProcess | undefined> {
    await this.prewarming;
    const standby = this.standby;
    this.standby = undefined;
    return standby;
  }
}
