import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { dockerCli } from "../core/docker-cli.js";
import { TabbifyError } from "../core/errors.js";
import type { LimitReason } from "../runtimes/cgroup.js";
import { workloadEnv } from "../runtimes/child.js";
import { containerOomKilled, imageToRun } from "../runtimes/docker.js";
import { containerEnv, hardenedRunArgs, withEnvFile } from "../runtimes/docker-run.js";
import { resolveCommand, spawnWithLimits } from "../runtimes/process.js";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import type { SupervisorContext } from "./context.js";
import { forRunner } from "./launch.js";
import type { RunnerRecord } from "./records.js";
import { killGroup } from "./spawn.js";

/**
 * `POST /v1/apps/:uuid/migrate`: a release's `[deploy] migrate` command, run once to completion in
 * that release before any target switches to it. It runs as the app's workload would (the same
 * image or staged artifact, the same env including the node's app env values, the same user, data
 * directory, network and limits: a container gets the workload's own flags (docker-run.ts), a
 * process its own cgroup as a process workload does), with the app's command replaced; nothing is
 * swapped and the running release is left alone. The answer is the exit code, whether a limit
 * ended it, and the last lines of output with every env value of the app cut out of them: a
 * migration that prints its database URL does not leak it into the deploy's events.
 */

export interface MigrationResult {
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  duration_ms: number;
  log_tail: string[];
  /** Set when the app's memory_mb limit, not the command, ended it (a migration has no CPU budget). */
  limit_reason?: Extract<LimitReason, "oom">;
}

export const MIGRATION_TAIL_LINES = 40;
const TAIL_BYTES = 16 * 1024;
const LINE_CHARS = 400;
export const DEFAULT_MIGRATION_TIMEOUT_SEC = 600;
export const MAX_MIGRATION_TIMEOUT_SEC = 3600;
/** Values this short (`1`, `on`) are too common to cut out of output without mangling it. */
const MIN_SCRUBBED_VALUE = 4;

/** The last TAIL_BYTES of a stream of output, never more in memory. */
class OutputTail {
  #buffer = Buffer.alloc(0);
  push(chunk: Buffer): void {
    const joined = Buffer.concat([this.#buffer, chunk]);
    this.#buffer = joined.length > TAIL_BYTES ? joined.subarray(joined.length - TAIL_BYTES) : joined;
  }
  lines(secrets: readonly string[]): string[] {
    let text = this.#buffer.toString("utf8");
    for (const secret of secrets) text = text.split(secret).join("[redacted]");
    return text
      .split(/\r?\n/)
      .filter((line) => line.trim() !== "")
      .slice(-MIGRATION_TAIL_LINES)
      .map((line) => (line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS)}…` : line));
  }
}

/** Runs `command` in the release `spec` describes for app `uuid`; never throws for a non-zero exit. */
export async function runMigration(
  ctx: SupervisorContext,
  uuid: string,
  spec: WorkloadSpec,
  command: string[],
  timeoutSec: number,
): Promise<MigrationResult> {
  if (spec.egress) {
    // The allow-list is the runner's proxy and nft chain; a migration has neither, so it would
    // reach everywhere the app may not.
    throw new TabbifyError("SPEC_INVALID", "a migration cannot run for an app with an egress allow-list");
  }
  const current = await ctx.records.read(uuid);
  // A scratch record: the app's uid and data dir as a deploy would get them, nothing written.
  const scratch = {
    uuid,
    ...(current?.app_uid !== undefined ? { app_uid: current.app_uid } : {}),
  } as RunnerRecord;
  const prepared = await forRunner(ctx, scratch, { ...spec, appUuid: uuid }, false);
  const secrets = Object.values(prepared.spec.env ?? {}).filter((v) => v.length >= MIN_SCRUBBED_VALUE);
  try {
    if (prepared.spec.runtime === "docker") {
      return await runInContainer(uuid, prepared.spec, prepared.user, command, timeoutSec, secrets);
    }
    if (prepared.spec.runtime === "process") {
      return await runInArtifact(prepared.spec, prepared.user, command, timeoutSec, secrets);
    }
    throw new TabbifyError(
      "SPEC_INVALID",
      `a migration runs in a process or docker release, not ${prepared.spec.runtime}`,
    );
  } finally {
    // The copy staged for the migration goes; the live runner's own copy stays.
    const keep = new Set([current?.staged_artifact_dir ?? ""]);
    await ctx.opts.appUsers?.pruneReleases(uuid, keep).catch(() => {});
  }
}

function finished(
  started: number,
  exit: { code: number | null; signal: string | null },
  timedOut: boolean,
  tail: OutputTail,
  secrets: readonly string[],
): MigrationResult {
  return {
    exit_code: exit.code,
    signal: exit.signal,
    timed_out: timedOut,
    duration_ms: Math.round(performance.now() - started),
    log_tail: tail.lines(secrets),
  };
}

/** A sink keeping the last of what it is written. */
function tailSink(tail: OutputTail): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      tail.push(chunk);
      done();
    },
  });
}

async function runInArtifact(
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
  command: string[],
  timeoutSec: number,
  secrets: readonly string[],
): Promise<MigrationResult> {
  const dir = spec.artifactDir;
  if (!dir) throw new TabbifyError("SPEC_INVALID", "a process release needs its artifact directory");
  const file = await resolveCommand(dir, command[0]!);
  if (!file) {
    throw new TabbifyError(
      "ARTIFACT_NOT_FOUND",
      `migrate command "${command[0]!.slice(0, 200)}" is neither an executable in the release nor on PATH`,
    );
  }
  const extra = spec.releaseManifest
    ? { ...spec.env, TABBIFY_RELEASE_MANIFEST: spec.releaseManifest }
    : spec.env;
  const { HOST: _host, PORT: _port, ...env } = workloadEnv(extra, 0, user, spec.dataDir);
  const tail = new OutputTail();
  const started = performance.now();
  const sink = tailSink(tail);
  const { child, cgroup } = await spawnWithLimits(
    file,
    command.slice(1),
    { cwd: dir, env, output: { stdout: sink, stderr: sink }, user },
    spec.limits ?? {},
    `migrate-${randomBytes(6).toString("hex")}`,
  );
  try {
    const result = await waitForExit(child, tail, timeoutSec, secrets, started, () => killGroup(child.pid!));
    if (await cgroup?.oomKilled().catch(() => false)) result.limit_reason = "oom";
    return result;
  } finally {
    await cgroup?.remove();
  }
}

/** Settles once the child exits and its output is read; a timeout kills with `kill`. */
function waitForExit(
  child: ChildProcess,
  tail: OutputTail,
  timeoutSec: number,
  secrets: readonly string[],
  started: number,
  kill: () => void,
): Promise<MigrationResult> {
  return new Promise((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutSec * 1000);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve(finished(started, { code, signal }, timedOut, tail, secrets));
    });
  });
}

async function runInContainer(
  uuid: string,
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
  command: string[],
  timeoutSec: number,
  secrets: readonly string[],
): Promise<MigrationResult> {
  const image = await imageToRun(spec);
  const name = `tbf-migrate-${uuid}-${randomBytes(4).toString("hex")}`;
  const labels = { "tabbify.migrate": uuid };
  try {
    return await withEnvFile(containerEnv(spec), async (envFile) => {
      // Not --rm: how it ended (the kernel's OOM kill included) is read before it is removed.
      const args = ["run", ...hardenedRunArgs(spec, { name, envFile, user, labels })];
      args.push("--entrypoint", command[0]!, image, ...command.slice(1));
      const tail = new OutputTail();
      const started = performance.now();
      const child = spawn("docker", args, { stdio: ["ignore", "pipe", "pipe"] });
      const spawned = await new Promise<Error | undefined>((resolve) => {
        child.once("error", resolve);
        child.once("spawn", () => resolve(undefined));
      });
      if (spawned) throw new TabbifyError("RUNTIME_UNAVAILABLE", `cannot run docker: ${spawned.message}`);
      child.stdout.pipe(tailSink(tail));
      child.stderr.pipe(tailSink(tail));
      const result = await waitForExit(child, tail, timeoutSec, secrets, started, () => {
        dockerCli(["kill", name], { timeoutMs: 30_000 }).catch(() => {});
      });
      if (await containerOomKilled(name)) result.limit_reason = "oom";
      return result;
    });
  } finally {
    await dockerCli(["rm", "-f", name], { timeoutMs: 30_000 }).catch(() => {});
  }
}
