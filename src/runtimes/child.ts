/**
 * What the process and wasm runtimes share: spawning a workload in its own process group with
 * its output passed through, and stopping that group gracefully.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import type { Writable } from "node:stream";
import { TabbifyError } from "../core/errors.js";
import { parseAppProbes } from "./app-probes.js";
import type { LimitReason } from "./cgroup.js";
import { DRAIN_SIGNAL } from "./drain-hook.js";
import type { Upstream, Workload, WorkloadExit, WorkloadSpec, WorkloadUser } from "./runtime.js";

/**
 * Where a workload's stdout and stderr go: this process's own streams (`inherit`), nowhere, one
 * file descriptor for both (the runner's log file), or two writable streams.
 */
export type WorkloadOutput = "inherit" | "ignore" | number | { stdout: Writable; stderr: Writable };

export interface RuntimeOptions {
  /** Defaults to `inherit`. */
  output?: WorkloadOutput;
}

export const DEFAULT_GRACE_MS = 10_000;

/**
 * The environment a workload starts with. The caller's own environment is not passed down whole:
 * a runner holds join tokens and manifest secrets that the app must not see, so only the basics a
 * program needs to run are inherited, then the spec's env, then HOST and PORT (which always win).
 * A workload run as a user of its own gets that user's working directory as HOME.
 */
export function workloadEnv(
  extra: Record<string, string> | undefined,
  port: number,
  user?: WorkloadUser,
  dataDir?: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"]) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  if (user) env.HOME = user.home;
  const data = dataDir === undefined ? {} : { TABBIFY_DATA_DIR: dataDir };
  return { ...env, ...extra, ...data, HOST: "127.0.0.1", PORT: String(port) };
}

/**
 * Spawns `file` as the leader of a new process group; resolves once it runs, rejects if it cannot.
 * Its stdin is closed unless `stdin: "pipe"` asks for a pipe (`child.stdin`) to talk to it.
 */
export function spawnInGroup(
  file: string,
  args: string[],
  opts: {
    cwd: string;
    env: NodeJS.ProcessEnv;
    output: WorkloadOutput | undefined;
    stdin?: "ignore" | "pipe";
    /** Switch to this uid and gid (with no supplementary groups) before exec; needs root. */
    user?: WorkloadUser | undefined;
    /** Opens fd 3 as a pipe (`child.stdio[3]`): the child says on it that it is ready (a wasm standby), or waits on it to go on (a process app booted ahead). */
    readyPipe?: boolean;
  },
): Promise<ChildProcess> {
  const output = opts.output ?? "inherit";
  const streamed = typeof output === "object";
  const child = spawn(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    // libuv drops the supplementary groups, then sets the gid, then the uid, in the child.
    ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    // A group of its own, so stop() reaches every process the app forked, and a Ctrl-C aimed at
    // the caller's terminal group does not hit the workload before the caller decides to stop it.
    detached: true,
    stdio: [
      opts.stdin ?? "ignore",
      streamed ? "pipe" : output,
      streamed ? "pipe" : output,
      ...(opts.readyPipe ? (["pipe"] as const) : []),
    ],
  });
  if (streamed) {
    child.stdout?.pipe(output.stdout, { end: false });
    child.stderr?.pipe(output.stderr, { end: false });
  }
  return new Promise((resolve, reject) => {
    child.once("error", (err) => {
      reject(new TabbifyError("WORKLOAD_START_FAILED", `cannot start ${file}: ${err.message}`));
    });
    child.once("spawn", () => resolve(child));
  });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    // ESRCH: the group is already gone, which is what we wanted.
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** A workload that is one child process (and whatever it forks) in its own process group. */
export class ChildWorkload implements Workload {
  readonly pid: number | undefined;
  /** Set by the runtime once known: it is hashed while the workload boots, not before. */
  version: string | undefined;
  readonly exited: Promise<WorkloadExit>;
  private hasExited = false;
  private stopping: Promise<void> | undefined;

  constructor(
    child: ChildProcess,
    readonly upstream: Upstream,
    version?: string,
    /** Asked once the child is gone: did a limit end it? (e.g. the cgroup's OOM counter) */
    private readonly limits?: {
      reason: () => Promise<LimitReason | undefined>;
      release: () => Promise<void>;
      throttled?: () => Promise<boolean>;
    },
  ) {
    this.pid = child.pid;
    this.version = version;
    const ended = new Promise<WorkloadExit>((resolve) => {
      // A child handed over from elsewhere (a standby host) may be gone already.
      if (child.exitCode !== null || child.signalCode !== null) {
        this.hasExited = true;
        resolve({ code: child.exitCode, signal: child.signalCode });
        return;
      }
      // `exit`, not `close`: a grandchild holding the pipes open must not delay the news.
      child.once("exit", (code, signal) => {
        this.hasExited = true;
        resolve({ code, signal });
      });
    });
    this.exited = ended.then(async (how) => {
      if (!this.limits) return how;
      const reason = await this.limits.reason().catch(() => undefined);
      await this.limits.release().catch(() => {});
      return reason ? { ...how, reason } : how;
    });
  }

  async cpuThrottled(): Promise<boolean> {
    return (await this.limits?.throttled?.().catch(() => false)) ?? false;
  }

  /** Asks the app to close its keep-alive connections gracefully (drain-hook.ts); ignored by programs without the hook. */
  drain(): void {
    if (this.pid !== undefined && !this.hasExited && !this.stopping) signalGroup(this.pid, DRAIN_SIGNAL);
  }

  stop(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.stopping ??= this.stopGroup(graceMs);
    return this.stopping;
  }

  private async stopGroup(graceMs: number): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    if (!this.hasExited) {
      signalGroup(pid, "SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<"grace-over">((resolve) => {
        timer = setTimeout(() => resolve("grace-over"), graceMs);
      });
      const outcome = await Promise.race([this.exited, graceOver]);
      clearTimeout(timer);
      if (outcome === "grace-over") signalGroup(pid, "SIGKILL");
      await this.exited;
    }
    // Whatever the app forked and left behind would keep its port or files busy.
    signalGroup(pid, "SIGKILL");
  }
}

/**
 * `sha256:<hex>` of a file, read as a stream (artifacts can be large binaries). node:crypto loads
 * here, not at startup: initialising it costs a runner tens of milliseconds before its workload
 * could start.
 */
export async function sha256File(path: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("error", reject)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(`sha256:${hash.digest("hex")}`));
  });
}

export function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TabbifyError("SPEC_INVALID", `port must be an integer in 1..65535, got ${port}`);
  }
}

const specKeys = new Set([
  "runtime",
  "appUuid",
  "artifactDir",
  "command",
  "image",
  "imageArchive",
  "entry",
  "limits",
  "env",
  "stateful",
  "dataMount",
  "dataDir",
  "lifecycle",
  "releaseManifest",
  "probes",
  "egress",
]);

const EGRESS_ENTRY = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/** `egress: {allow: ["host" | "host:port", …]}`, process workloads only (src/runner/egress.ts). */
export function checkEgress(egress: unknown, kind: string): void {
  if (egress === undefined) return;
  if (kind !== "process")
    throw new TabbifyError("SPEC_INVALID", "egress allow-lists are enforced for the process runtime only");
  const allow = (egress as { allow?: unknown } | null)?.allow;
  if (
    typeof egress !== "object" ||
    egress === null ||
    Object.keys(egress).some((k) => k !== "allow") ||
    !Array.isArray(allow) ||
    allow.length > 256 ||
    allow.some((h) => typeof h !== "string" || !EGRESS_ENTRY.test(h))
  )
    throw new TabbifyError(
      "SPEC_INVALID",
      'egress must be {allow: ["host" or "host:port", …]} (at most 256)',
    );
}

/** Rejects fields a WorkloadSpec does not have (a typo must not be silently ignored) and bad env. */
export function checkCommonSpec(spec: unknown, kind: string): asserts spec is WorkloadSpec {
  if (typeof spec !== "object" || spec === null)
    throw new TabbifyError("SPEC_INVALID", "spec must be an object");
  const record = spec as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!specKeys.has(key)) throw new TabbifyError("SPEC_INVALID", `unknown spec field "${key}"`);
  }
  if (record.runtime !== kind) {
    throw new TabbifyError("SPEC_INVALID", `spec is for runtime "${String(record.runtime)}", not "${kind}"`);
  }
  checkStateAndLifecycle(record);
  parseAppProbes(record.probes);
  checkEgress(record.egress, kind);
  const manifest = record.releaseManifest;
  if (manifest !== undefined && (typeof manifest !== "string" || !manifest.startsWith("/"))) {
    throw new TabbifyError("SPEC_INVALID", "releaseManifest must be an absolute path");
  }
  const env = record.env;
  if (env !== undefined) {
    if (typeof env !== "object" || env === null) throw new TabbifyError("SPEC_INVALID", "env must be a map");
    for (const [name, value] of Object.entries(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        throw new TabbifyError(
          "SPEC_INVALID",
          `env name "${name.slice(0, 64)}" is not a valid variable name`,
        );
      }
      // Values are never echoed: they may be secrets.
      if (typeof value !== "string") throw new TabbifyError("SPEC_INVALID", `env ${name} must be a string`);
    }
  }
}

/** An absolute container/guest path without `.` or `..` parts: where a stateful app's data shows. */
export function isCleanAbsolutePath(value: unknown): value is string {
  return (
    typeof value === "string" &&
    value.startsWith("/") &&
    value.length <= 1024 &&
    !value.includes("\0") &&
    !value.split("/").some((part) => part === "." || part === "..") &&
    !/[:,\\]/.test(value)
  );
}

function checkStateAndLifecycle(record: Record<string, unknown>): void {
  if (record.stateful !== undefined && typeof record.stateful !== "boolean")
    throw new TabbifyError("SPEC_INVALID", "stateful must be true or false");
  if (record.dataMount !== undefined && !isCleanAbsolutePath(record.dataMount))
    throw new TabbifyError("SPEC_INVALID", "dataMount must be an absolute path without . or .. parts");
  if (record.dataDir !== undefined && !isCleanAbsolutePath(record.dataDir))
    throw new TabbifyError("SPEC_INVALID", "dataDir must be an absolute path");
  if ((record.dataMount !== undefined || record.dataDir !== undefined) && record.stateful !== true)
    throw new TabbifyError("SPEC_INVALID", "dataMount and dataDir need stateful = true");
  const lifecycle = record.lifecycle as Record<string, unknown> | undefined;
  if (lifecycle !== undefined) {
    if (
      typeof lifecycle !== "object" ||
      lifecycle === null ||
      (lifecycle.mode !== "always_on" && lifecycle.mode !== "on_request") ||
      typeof lifecycle.idleTimeoutSec !== "number" ||
      !Number.isInteger(lifecycle.idleTimeoutSec) ||
      lifecycle.idleTimeoutSec < 1
    )
      throw new TabbifyError(
        "SPEC_INVALID",
        'lifecycle must be {mode: "always_on" | "on_request", idleTimeoutSec: a positive integer}',
      );
  }
}
