import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { open } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dockerCli } from "../core/docker-cli.js";
import { isErrno } from "../core/errors.js";
import { streamingProcessFlags } from "../core/node-flags.js";
import { readProcStat } from "../core/proc-stat.js";
import { sleep } from "../core/sleep.js";
import type { LaunchConfig } from "../runner/launch.js";
import { logRotateBytes, rotateByRename } from "../runner/log-rotation.js";
import { unstamped } from "../runner/log-stamp.js";
import type { WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";

/**
 * Starting runners as detached processes: a session and process group of their own (so a
 * supervisor's death or Ctrl-C never reaches them), stdout and stderr appended to
 * `<data>/runners/<uuid>.log`. The workload spec, its env, the node key and the workload's user
 * travel as one JSON line on the runner's stdin (see runner/launch.ts); its environment holds
 * only what `runnerEnvNames` allows.
 */

/** The compiled `tabbify` entry point beside this module in dist/. */
export const defaultRunnerEntry = fileURLToPath(new URL("../main/tabbify.js", import.meta.url));

export interface RunnerLaunch {
  entry: string;
  uuid: string;
  controlSock: string;
  dataDir: string;
  bindAddr: string;
  logPath: string;
  spec: WorkloadSpec;
  parent: string;
  nodeUrl?: string;
  nodeKey?: string;
  /** Who the app's workloads run as (the supervisor runs as root). */
  user?: WorkloadUser;
  /** Extra flags, e.g. restart delays for tests. */
  extraArgs?: string[];
}

/**
 * The only variables a runner inherits from the supervisor: what node, the docker CLI and a
 * workload's basics need. Everything else (the node key, webhook secrets, GitHub App keys,
 * Forgejo tokens, AWS credentials, the supervisor's own settings) stays with the supervisor,
 * since a workload could read its runner's initial environment in /proc.
 */
export const runnerEnvNames: readonly string[] = [
  "PATH",
  "HOME",
  "LANG",
  "LC_ALL",
  "TZ",
  "TMPDIR",
  "DOCKER_HOST",
  "DOCKER_CONFIG",
  "DOCKER_CONTEXT",
  "DOCKER_CERT_PATH",
  "DOCKER_TLS_VERIFY",
  "XDG_RUNTIME_DIR",
];

/** The last `bytes` of a runner log (for error bodies), without the runner's line stamps. */
export async function tailLog(path: string, bytes = 4096): Promise<string> {
  try {
    const fh = await open(path, "r");
    try {
      const { size } = await fh.stat();
      const start = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return unstamped(buf.toString("utf8"));
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return "";
    throw err;
  }
}

/** The environment every runner starts with: `runnerEnvNames` of the supervisor's, nothing else. */
export function runnerEnv(from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of runnerEnvNames) if (from[name] !== undefined) env[name] = from[name];
  return env;
}

/**
 * Spawns `node <entry> runner ...args` detached, stdout and stderr appended to `logPath`; `launch`
 * (if any) is written to its stdin, which is then closed.
 */
async function spawnDetachedRunner(
  entry: string,
  args: string[],
  logPath: string,
  launch?: LaunchConfig,
): Promise<ChildProcess> {
  const logFd = openSync(logPath, "a", 0o600);
  try {
    const child = spawn(
      process.execPath,
      ["--enable-source-maps", ...streamingProcessFlags, entry, "runner", ...args],
      { detached: true, stdio: [launch ? "pipe" : "ignore", logFd, logFd], env: runnerEnv() },
    );
    await new Promise<void>((resolve, reject) => {
      child.once("error", reject);
      child.once("spawn", () => {
        child.off("error", reject);
        resolve();
      });
    });
    if (launch) {
      // A runner that dies before reading fails the write (EPIPE); its exit reports the death.
      child.stdin!.on("error", () => {});
      child.stdin!.end(`${JSON.stringify(launch)}\n`);
    }
    child.unref();
    return child;
  } finally {
    closeSync(logFd);
  }
}

/** Flags every runner of one supervisor shares, spare or not. */
function commonRunnerArgs(launch: SpareLaunch): string[] {
  return [
    "--control-sock",
    launch.controlSock,
    "--data-dir",
    launch.dataDir,
    "--log",
    launch.logPath,
    "--parent",
    launch.parent,
    ...(launch.nodeUrl ? ["--node", launch.nodeUrl] : []),
    ...(launch.extraArgs ?? []),
  ];
}

export async function spawnRunner(launch: RunnerLaunch): Promise<ChildProcess> {
  await rotateByRename(launch.logPath, logRotateBytes);
  const args = ["--uuid", launch.uuid, "--bind", launch.bindAddr, ...commonRunnerArgs(launch)];
  return spawnDetachedRunner(launch.entry, args, launch.logPath, {
    spec: launch.spec,
    ...(launch.nodeKey ? { node_key: launch.nodeKey } : {}),
    ...(launch.user ? { user: launch.user } : {}),
  });
}

/** What a spare is spawned with: no app, no secrets (those come with `assign`). */
export type SpareLaunch = Omit<RunnerLaunch, "uuid" | "spec" | "bindAddr" | "nodeKey" | "user">;

/**
 * A warm spare: `tabbify runner --spare`, booted ahead with no app; it waits on its own control
 * socket for an `assign` (see spares.ts). Its log is moved to the app's log when assigned.
 */
export function spawnSpareRunner(launch: SpareLaunch): Promise<ChildProcess> {
  const args = ["--spare", ...commonRunnerArgs(launch)];
  return spawnDetachedRunner(launch.entry, args, launch.logPath);
}

/** True while `pid` exists and is not a zombie. */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return isErrno(err, "EPERM");
  }
  const stat = await readProcStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

function signal(target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig);
  } catch (err) {
    if (!isErrno(err, "ESRCH")) throw err;
  }
}

/** SIGTERM to the process group led by `pid`, SIGKILL after `graceMs` if it still lives. */
export async function stopGroup(pid: number, graceMs: number): Promise<void> {
  signal(-pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await processAlive(pid))) break;
    await sleep(50);
  }
  signal(-pid, "SIGKILL");
}

/** SIGKILL to a whole process group; used on workload orphans left by a runner that died. */
export function killGroup(pid: number): void {
  signal(-pid, "SIGKILL");
}

/**
 * Removes the containers the docker runtime labelled with this app (`tabbify.app=<uuid>`); only
 * called once the app's runner is known dead, so every such container is an orphan.
 */
export async function removeAppContainers(uuid: string): Promise<void> {
  try {
    const { stdout } = await dockerCli(["ps", "-aq", "--filter", `label=tabbify.app=${uuid}`], {
      timeoutMs: 15_000,
    });
    const ids = stdout.split("\n").filter(Boolean);
    if (ids.length > 0) await dockerCli(["rm", "-f", ...ids], { timeoutMs: 30_000 });
  } catch {
    // No docker CLI or daemon: then there are no containers to leave behind either.
  }
}

/**
 * Removes the images `tcli push` shipped for an app (`tbf-img-<uuid>-v<N>`) once the app is
 * purged; an image a container still uses stays, and no docker at all means nothing to remove.
 */
export async function removeShippedImages(uuid: string): Promise<void> {
  try {
    const { stdout } = await dockerCli(
      ["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", `reference=tbf-img-${uuid}-v*`],
      { timeoutMs: 15_000 },
    );
    const tags = stdout.split("\n").filter(Boolean);
    if (tags.length > 0) await dockerCli(["rmi", ...tags], { timeoutMs: 60_000 });
  } catch {
    // Best effort: a purge must not fail on an image docker keeps for a container or cannot list.
  }
}
