/**
 * The `wasm` runtime: a WAGI/CGI-style WASI preview1 module served per request by a child
 * process (wasm-host.js), so a wasm workload has a pid, an exit and a stop like any other.
 *
 * prewarm() boots a standby host (node plus its first worker thread, most of a cold start) before
 * any app is known; the next start() whose memory limit matches hands it the app over its stdin.
 * prewarmFor() goes further for a sleeping app (scale to zero): the host gets the app's config
 * ahead, loads and compiles its module into its first worker, and waits, listening on nothing,
 * until the wake's start() says go; it then only has to listen.
 */
import type { ChildProcess } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { TabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
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
/** How long prewarm() waits at most for a standby to say it has booted (or an armed host that it serves). */
const STANDBY_READY_MS = 10_000;
/** How long prewarmFor() waits at most for a host to load and compile its app's module. */
const ARMING_MS = 30_000;

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
  /**
   * A standby's word on fd 3, a line each: `ready` once booted, then for an armed host `armed`
   * (its app's module is loaded) and `serving` (it listens). Resolves true once the host has said
   * `line`, false when it exits or closes fd 3 first, or after `timeoutMs`. A cold host has no fd
   * 3 and says nothing.
   */
  hears(line: string, timeoutMs: number): Promise<boolean>;
}

/** A sleeping app's host, its module loaded ahead (prewarmFor), waiting for the wake's go. */
interface ArmedHost {
  host: HostProcess;
  /** The very spec and user it was armed for: a start with these takes it unchecked. */
  spec: WorkloadSpec;
  user: WorkloadUser | undefined;
  workload: ChildWorkload;
}

/** Listens to what a host says on fd 3 (see HostProcess.hears). */
function hearing(pipe: Readable | null | undefined): HostProcess["hears"] {
  if (!pipe) return async () => false;
  const said = new Set<string>();
  const waiting = new Set<{ line: string; done: (heard: boolean) => void }>();
  let closed = false;
  let buffered = "";
  pipe.setEncoding("utf8");
  pipe.on("data", (chunk: string) => {
    buffered += chunk;
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      said.add(line);
      for (const w of waiting) if (w.line === line) w.done(true);
    }
  });
  const end = () => {
    closed = true;
    for (const w of waiting) w.done(false);
  };
  pipe.once("close", end).once("error", end);
  return (line, timeoutMs) => {
    if (said.has(line)) return Promise.resolve(true);
    if (closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w = {
        line,
        done: (heard: boolean) => {
          clearTimeout(timer);
          waiting.delete(w);
          resolve(heard);
        },
      };
      // Bounded: a host that never says so (hung) must not hold up a start or a discard; the
      // start then waits on its health check like any other.
      const timer = setTimeout(() => w.done(false), timeoutMs);
      waiting.add(w);
    });
  };
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
  /** Armed by prewarmFor() and not yet taken by start() or discardPrewarmed(). */
  private armed: ArmedHost | undefined;
  private arming: Promise<void> | undefined;

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
    await this.arming;
    const armed = this.armed;
    this.armed = undefined;
    if (armed) {
      // The wake passes the very spec the app slept with, checked when the host was armed. Like a
      // process app booted ahead, the workload listens on the port chosen then, not `port`.
      if (armed.spec === spec && armed.user === user && !armed.host.gone) {
        armed.host.child.stdin!.end("go\n");
        // Returned once it listens, so the caller's first connection is taken: no polling.
        await armed.host.hears("serving", STANDBY_READY_MS);
        return armed.workload;
      }
      // Armed for another spec (a deploy came while the app slept), or gone: started afresh.
      await armed.workload.stop(STANDBY_GRACE_MS).catch(() => {});
    }
    const checked = await this.check(spec);
    const maxMemPages = maxMemPagesFor(checked.memoryMb);
    const host = await this.hostFor(maxMemPages, false);
    if (!host) throw new TabbifyError("WORKLOAD_START_FAILED", "cannot start the wasm host (node)");
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
    armed = false,
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
    if (armed) config.armed = true;
    const workload = new ChildWorkload(host.child, upstream);
    // Should the host die just now, the write fails quietly and `exited` reports the death. An
    // armed host's stdin stays open for the go (or closes without one: the host then exits).
    const line = `${JSON.stringify(config)}\n`;
    if (armed) host.child.stdin!.write(line);
    else host.child.stdin!.end(line);
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
    // Done once the host has booted, so that a caller which waits for prewarm() knows the next
    // start() skips the whole boot.
    await standby.hears("ready", STANDBY_READY_MS);
  }

  /**
   * Arms a host for a sleeping app: the standby (booted now if there is none that fits) gets the
   * app's config and loads its module, so the wake's start() only has to say go. None of the
   * module runs before that: it is compiled, not instantiated. Resolves once armed (or not: best
   * effort, the wake then starts as any start does).
   */
  async prewarmFor(spec: WorkloadSpec, user?: WorkloadUser): Promise<void> {
    if (this.armed || this.arming) return this.arming;
    this.arming = this.arm(spec, user)
      .catch(() => {})
      .finally(() => {
        this.arming = undefined;
      });
    await this.arming;
  }

  private async arm(spec: WorkloadSpec, user: WorkloadUser | undefined): Promise<void> {
    const checked = await this.check(spec);
    const maxMemPages = maxMemPagesFor(checked.memoryMb);
    const host = await this.hostFor(maxMemPages, true);
    if (!host) return;
    // The config only once booted: its warm-ups run before the module is loaded.
    await host.hears("ready", STANDBY_READY_MS);
    const workload = this.handOver(host, spec, checked, await freeLoopbackPort(), user, true);
    workload.version = (await import("../core/digest.js")).digestOf(checked.bytes);
    if (!(await host.hears("armed", ARMING_MS))) {
      await workload.stop(STANDBY_GRACE_MS).catch(() => {});
      return;
    }
    this.armed = { host, spec, user, workload };
  }

  /**
   * Spawns a host that waits for its app's config on stdin: at once (a cold start) or whenever an
   * app comes (`standby`: booted ahead, and quietly gone if none ever does). The app's env, which
   * may hold secrets, thus never shows in the host's argv or environment. Undefined if node
   * cannot be spawned.
   */
  /** The standby when it fits `maxMemPages`, else a fresh host (`standby`: booted to wait for its app). */
  private async hostFor(maxMemPages: number, standby: boolean): Promise<HostProcess | undefined> {
    const host = await this.takeStandby();
    if (host && !host.gone && host.maxMemPages === maxMemPages) return host;
    // A standby that cannot serve this spec is stopped alongside the fresh host's boot.
    const stopping = host && stopStandby(host);
    try {
      return await this.spawnHost(maxMemPages, standby);
    } finally {
      await stopping;
    }
  }

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
      hears: hearing(child.stdio[3] as Readable | null | undefined),
    };
    host.exit = new Promise<void>((resolveExit) => {
      child.once("exit", () => {
        host.gone = true;
        resolveExit();
      });
    });
    // A dead host's pipe fails on write (EPIPE); its exit is what reports the death.
    child.stdin!.on("error", () => {});
    return host;
  }

  /** Stops a standby or an armed host no start() took, and resolves once it has exited. Idempotent. */
  async discardPrewarmed(): Promise<void> {
    await Promise.all([this.prewarming, this.arming]);
    const standby = this.standby;
    const armed = this.armed;
    this.standby = undefined;
    this.armed = undefined;
    if (standby || armed) {
      const previous = this.discarding;
      this.discarding = Promise.all([
        previous,
        standby && stopStandby(standby),
        armed && stopStandby(armed.host),
      ]).then(() => {});
    }
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
