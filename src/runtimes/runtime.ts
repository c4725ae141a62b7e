/**
 * A runtime turns a workload spec into a running HTTP server on a private loopback port. The
 * runner owns the app's public address (`<app address>:8730`) and forwards to that port, so a
 * swap is: start the new workload on another port, wait for health, switch, drain, stop the old.
 *
 * Capability tags the supervisor advertises are exactly the `kind`s whose `available()` is true.
 */
import type { AppProbes } from "./app-probes.js";

export type RuntimeKind = "process" | "docker" | "wasm";
export const runtimeKinds: readonly RuntimeKind[] = ["process", "docker", "wasm"];

export interface WorkloadSpec {
  runtime: RuntimeKind;
  /** The app this workload belongs to; docker names and labels its containers with it so a restarted runner can find them. */
  appUuid?: string;
  /** Directory holding the app's files (process: the command's cwd; wasm: where `entry` is). */
  artifactDir?: string;
  /** process: argv run in artifactDir, e.g. ["node", "server.js"] or ["./app"]. */
  command?: string[];
  /** docker: an image reference (pulled from our registry when not present locally). */
  image?: string;
  /** docker: a `docker save` archive (.tar or .tar.gz) loaded before running `image`. */
  imageArchive?: string;
  /** wasm: the module file, relative to artifactDir. */
  entry?: string;
  /**
   * wasm: per-request limits (timeoutMs is the CPU-time budget `fuel_per_request` maps to).
   * process and docker: memoryMb and vcpus cap the whole workload.
   */
  limits?: { timeoutMs?: number; memoryMb?: number; vcpus?: number };
  /** Extra environment for the workload; HOST and PORT are always set by the runtime. */
  env?: Record<string, string>;
  /**
   * A read-only copy of the release manifest on the supervisor's host; the workload finds it at
   * the path TABBIFY_RELEASE_MANIFEST names (for docker, a read-only mount of it).
   */
  releaseManifest?: string;
  /**
   * process: the workload's only way out is an egress proxy of its runner that lets through
   * exactly these hosts (`host` or `host:port`; see src/runner/egress.ts). Absent: no proxy.
   */
  egress?: { allow: string[] };
  /** The app keeps data across swaps and restarts (see src/supervisor/app-data.ts). */
  stateful?: boolean;
  /** Where a stateful app sees its data: docker mounts it there, wasm preopens it there (default /data). */
  dataMount?: string;
  /**
   * The host directory holding a stateful app's data. Set by the supervisor only (the API does not
   * take it); given to the workload as TABBIFY_DATA_DIR (process), a mount (docker), a preopen (wasm).
   */
  dataDir?: string;
  /**
   * The app's declared probes (healthz, ready, version and what version must report): a new
   * workload takes requests only once they pass (see app-probes.ts).
   */
  probes?: AppProbes;
  /** `on_request`: the runner starts the workload on the first request and stops it when idle. */
  lifecycle?: { mode: "always_on" | "on_request"; idleTimeoutSec: number };
}

/** Where a stateful app's data shows inside docker and wasm workloads unless it says otherwise. */
export const DEFAULT_DATA_MOUNT = "/data";

/** How a workload ended; `reason` is set when a limit ended it (see cgroup.ts). */
export interface WorkloadExit {
  code: number | null;
  signal: string | null;
  reason?: "oom" | "cpu" | "fuel";
}

/** Where a docker workload finds its release manifest. */
export const CONTAINER_RELEASE_MANIFEST = "/run/tabbify/release.json";

/**
 * Who a workload runs as, chosen by the supervisor (never by a spec): a uid of the app's own, the
 * app group, and the app's working directory (its HOME). Only a runner running as root can switch
 * to it; without one a process or wasm workload runs as the runner's own user. Docker workloads
 * always run as a user without privileges (see docker.ts).
 */
export interface WorkloadUser {
  uid: number;
  gid: number;
  home: string;
}

export interface Upstream {
  host: string;
  port: number;
}

export interface Workload {
  /** OS pid of the workload's main process (the container's init for docker; the worker host for wasm). */
  readonly pid: number | undefined;
  /** Where it serves HTTP. */
  readonly upstream: Upstream;
  /** What it runs, for reports: the image digest for docker, the file's sha256 for wasm/process. */
  readonly version: string | undefined;
  /** Settles when the workload ends on its own or after stop(). */
  readonly exited: Promise<WorkloadExit>;
  /**
   * Optional: asks the workload to close its keep-alive connections gracefully (each one after its
   * next response, or once quiet) while it keeps serving, before a stop. The kernel hop's swap uses
   * it: those connections end in the workload itself (see runtimes/drain-hook.ts).
   */
  drain?(): void;
  /** Graceful stop: SIGTERM (or equivalent), wait `graceMs`, then kill. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** Optional: whether its `vcpus` cap has held it back (throttled) since it started. */
  cpuThrottled?(): Promise<boolean>;
  /** Set for a workload behind an egress proxy (runner/egress.ts): what enforces its allow-list. */
  readonly egress?: EgressEnforcement;
}

/**
 * Who holds a workload to its egress allow-list: the proxy, and the kernel too where it could
 * confine the workload's uid (then a raw connection around the proxy is refused). `reason` says
 * why the kernel does not.
 */
export interface EgressEnforcement {
  enforced_by: "proxy+kernel" | "proxy";
  reason?: string;
}

export interface Runtime {
  readonly kind: RuntimeKind;
  /** True when this host can run this runtime (e.g. docker: the daemon answers). */
  available(): Promise<boolean>;
  /**
   * Checks a spec before anything starts: unknown fields, missing artifact, module without a
   * memory maximum, ... Throws TabbifyError (`SPEC_INVALID`, `ARTIFACT_NOT_FOUND`,
   * `RUNTIME_UNAVAILABLE`) and starts nothing.
   */
  validate(spec: WorkloadSpec): Promise<void>;
  /**
   * Starts the workload serving on 127.0.0.1:`port`, after the same checks as `validate` (so a
   * caller need not validate first). Resolves once spawned (not yet healthy).
   */
  start(spec: WorkloadSpec, port: number, user?: WorkloadUser): Promise<Workload>;
  /**
   * Optional: boots whatever a start of this kind would boot that does not depend on the spec,
   * so the next start() skips it. A warm spare runner calls it while it waits for an app.
   * Best effort: a prewarm that fails only means the next start boots from cold.
   */
  prewarm?(): Promise<void>;
  /**
   * Optional: boots the next workload of a sleeping app as far as it goes without running any of
   * the app's code, so the start that wakes it (same spec and user) skips that part; a start of
   * another spec discards it. Resolves once booted; best effort (the next start boots from cold).
   */
  prewarmFor?(spec: WorkloadSpec, user?: WorkloadUser): Promise<void>;
  /** Optional: releases what prewarm() or prewarmFor() booted and no start() took. */
  discardPrewarmed?(): Promise<void>;
  /**
   * Optional: finds a workload for `spec` still running from a previous runner of the same app
   * (one that was killed) and takes it over instead of starting another; undefined when there is
   * none that runs this spec. Leftovers it does not take are removed.
   */
  adopt?(spec: WorkloadSpec, user?: WorkloadUser): Promise<Workload | undefined>;
}
