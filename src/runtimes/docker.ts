/**
 * The `docker` runtime: an image (pulled, or loaded from a `docker save` archive) run on the real
 * dockerd with `--network host`, so the app binds 127.0.0.1:PORT on the host like any other
 * workload. Everything goes through the docker CLI (execFile, never a shell).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { validate as isUuid } from "uuid";
import { dockerCli, dockerDaemonAnswers } from "../core/docker-cli.js";
import { TabbifyError } from "../core/errors.js";
import {
  checkCommonSpec,
  checkPort,
  DEFAULT_GRACE_MS,
  type RuntimeOptions,
  type WorkloadOutput,
} from "./child.js";
import { containerEnv, containerUser, hardenedRunArgs, withEnvFile } from "./docker-run.js";
import { imageRepository } from "./registry-pull.js";
import type { Runtime, Upstream, Workload, WorkloadExit, WorkloadSpec, WorkloadUser } from "./runtime.js";

const docker = (args: string[], timeoutMs = 60_000) => dockerCli(args, { timeoutMs });

/** Image references as the docker CLI accepts them: [host[:port]/]path[:tag][@digest]. */
const imageReference =
  /^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$|^sha256:[a-f0-9]{64}$/;

let sequence = 0;

/** The spec's app uuid when it is one: only then do its containers carry a name and label to find. */
function appUuidOf(spec: WorkloadSpec): string | undefined {
  return typeof spec.appUuid === "string" && isUuid(spec.appUuid) ? spec.appUuid : undefined;
}

/** `tbf-<app uuid or random>-<seq>`: unique across runner restarts (the time part) and within one. */
function containerName(appUuid: string | undefined): string {
  const app = appUuid?.toLowerCase() ?? randomBytes(4).toString("hex");
  return `tbf-${app}-${Date.now().toString(36)}${(sequence++).toString(36)}`;
}

interface LocalImage {
  id: string;
  repoDigests: string[];
  /** The image's own ENV, which docker puts under whatever a run adds. */
  env: string[];
}

/** An image as the daemon has it now, by reference or ID; undefined when it has none such. */
async function localImage(reference: string): Promise<LocalImage | undefined> {
  try {
    const { stdout } = await docker(["image", "inspect", reference], 15_000);
    const [image] = JSON.parse(stdout) as {
      Id: string;
      RepoDigests?: string[] | null;
      Config?: { Env?: string[] | null } | null;
    }[];
    if (!image) return undefined;
    return { id: image.Id, repoDigests: image.RepoDigests ?? [], env: image.Config?.Env ?? [] };
  } catch {
    return undefined;
  }
}

async function imageVersion(image: string): Promise<string | undefined> {
  const local = await localImage(image);
  if (!local) return undefined;
  // An image tagged into several repositories has one digest per repository: report the one of
  // the repository it was asked for, which is what the registry stored for this deploy.
  const repository = imageRepository(image);
  return local.repoDigests.find((d) => d.startsWith(`${repository}@`)) ?? local.repoDigests[0] ?? local.id;
}

/**
 * Follows a container's log into the runtime's output; ends by itself when the container goes.
 * `tail` limits how much of what the container already printed is written again.
 */
function followLogs(
  name: string,
  output: WorkloadOutput | undefined,
  tail?: number,
): ChildProcess | undefined {
  const target = output ?? "inherit";
  if (target === "ignore") return undefined;
  const streamed = typeof target === "object";
  const args = ["logs", "-f", ...(tail === undefined ? [] : ["--tail", String(tail)]), name];
  const child = spawn("docker", args, {
    stdio: ["ignore", streamed ? "pipe" : target, streamed ? "pipe" : target],
  });
  if (streamed) {
    child.stdout?.pipe(target.stdout, { end: false });
    child.stderr?.pipe(target.stderr, { end: false });
  }
  child.on("error", () => {});
  return child;
}

/** One container, run or adopted; `exited` comes from `docker wait`. */
export class ContainerWorkload implements Workload {
  readonly exited: Promise<WorkloadExit>;
  private hasExited = false;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly pid: number | undefined,
    readonly upstream: Upstream,
    readonly version: string | undefined,
    private readonly logs: ChildProcess | undefined,
  ) {
    this.exited = new Promise((resolve) => {
      const waiter = spawn("docker", ["wait", name], { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      waiter.stdout?.on("data", (c: Buffer) => {
        out += c.toString();
      });
      const done = async () => {
        this.hasExited = true;
        const code = Number.parseInt(out.trim(), 10);
        const how: WorkloadExit = { code: Number.isNaN(code) ? null : code, signal: null };
        if ((await inspectContainer(name))?.oomKilled) how.reason = "oom";
        resolve(how);
      };
      waiter.on("error", done);
      waiter.on("exit", done);
    });
  }

  stop(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.stopping ??= this.stopContainer(graceMs);
    return this.stopping;
  }

  private async stopContainer(graceMs: number): Promise<void> {
    if (!this.hasExited) {
      // docker stop sends the image's stop signal (SIGTERM by default), then SIGKILL after -t.
      const seconds = Math.max(0, Math.ceil(graceMs / 1000));
      await docker(["stop", "-t", String(seconds), this.name], graceMs + 30_000).catch(() => undefined);
      await this.exited;
    }
    await docker(["rm", "-f", this.name], 30_000).catch(() => undefined);
    this.logs?.kill();
  }
}

interface ContainerInfo {
  pid: number | undefined;
  running: boolean;
  /** The whole environment the container runs with: its image's ENV overridden by the run's. */
  env: string[];
  /** The reference it was run with (as given to `docker run`). */
  reference: string;
  /** The ID of the image it runs, whatever its reference names today. */
  imageId: string;
  /** `--memory` in bytes; 0 without a limit. */
  memoryBytes: number;
  /** `--user` as given to `docker run` (empty: the image's user). */
  user: string;
  /** RFC 3339 with nanoseconds, UTC. */
  created: string;
  /** The kernel killed it for going over its memory limit. */
  oomKilled: boolean;
}

async function inspectContainer(name: string): Promise<ContainerInfo | undefined> {
  try {
    // The whole document, not a template joining fields with a separator an env value may hold.
    const { stdout } = await docker(["container", "inspect", name], 15_000);
    const [c] = JSON.parse(stdout) as {
      State: { Pid: number; Running: boolean; OOMKilled?: boolean };
      Config: { Env: string[] | null; Image: string; User?: string };
      HostConfig: { Memory?: number };
      Image: string;
      Created: string;
    }[];
    if (!c) return undefined;
    return {
      pid: c.State.Pid > 0 ? c.State.Pid : undefined,
      running: c.State.Running,
      env: c.Config.Env ?? [],
      reference: c.Config.Image,
      imageId: c.Image,
      memoryBytes: c.HostConfig.Memory ?? 0,
      user: c.Config.User ?? "",
      created: c.Created,
      oomKilled: c.State.OOMKilled === true,
    };
  } catch {
    return undefined;
  }
}

/** True when the kernel killed container `name` for going over its memory limit. */
export async function containerOomKilled(name: string): Promise<boolean> {
  return (await inspectContainer(name))?.oomKilled === true;
}

/** `NAME=value` lines as a map; the last one of a name wins, as in the process's environment. */
function envMap(lines: string[]): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  for (const line of lines) {
    const eq = line.indexOf("=");
    if (eq === -1) env.set(line, undefined);
    else env.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return env;
}

function containerPort(info: ContainerInfo): number | undefined {
  const port = Number(envMap(info.env).get("PORT"));
  return Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined;
}

const ADOPTED_LOG_TAIL_LINES = 200;

/**
 * Takes over a running container: `exited` from `docker wait`, its log followed into `output`.
 * Its last lines are written again: they cover what it printed while no runner followed it (the
 * earlier ones are in the previous runner's log), without replaying a long-lived app's history.
 */
async function workloadOf(
  name: string,
  info: ContainerInfo,
  output: WorkloadOutput | undefined,
): Promise<ContainerWorkload | undefined> {
  const port = containerPort(info);
  if (!info.running || port === undefined) return undefined;
  return new ContainerWorkload(
    name,
    info.pid,
    { host: "127.0.0.1", port },
    await imageVersion(info.reference),
    followLogs(name, output, ADOPTED_LOG_TAIL_LINES),
  );
}

/**
 * Re-finds a running container this runtime started (by name), e.g. after the runner itself
 * restarted. Undefined when there is no such running container.
 */
export async function adoptContainer(
  name: string,
  options: RuntimeOptions = {},
): Promise<ContainerWorkload | undefined> {
  const info = await inspectContainer(name);
  return info ? workloadOf(name, info, options.output) : undefined;
}

/**
 * Whether a container runs what `start(spec, <its port>)` would run: the same image, the same
 * environment (the image's ENV, then spec.env, then HOST and its own PORT, exactly as start's
 * env file gives it), the same memory limit and the same user.
 */
function runsSpec(info: ContainerInfo, spec: WorkloadSpec, image: LocalImage, user: string): boolean {
  const port = containerPort(info);
  if (!info.running || port === undefined || info.imageId !== image.id) return false;
  if (info.user !== user) return false;
  const memoryMb = spec.limits?.memoryMb ? Math.floor(spec.limits.memoryMb) : 0;
  if (info.memoryBytes !== memoryMb * 1024 * 1024) return false;
  const expected = envMap(image.env);
  for (const [k, v] of Object.entries(containerEnv(spec, port))) {
    expected.set(k, v);
  }
  const actual = envMap(info.env);
  if (actual.size !== expected.size) return false;
  for (const [k, v] of expected) {
    if (!actual.has(k) || actual.get(k) !== v) return false;
  }
  return true;
}

/** `docker load`s an archive (.tar or .tar.gz) and returns the image to run from it. */
async function load(archive: string, wanted: string | undefined): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await docker(["load", "-q", "-i", archive], 600_000));
  } catch (err) {
    throw new TabbifyError(
      "IMAGE_LOAD_FAILED",
      `cannot load image archive ${archive}: ${(err as Error).message}`,
    );
  }
  if (wanted) return wanted;
  const loaded = [...stdout.matchAll(/^Loaded image(?: ID)?: (\S+)$/gm)].map((m) => m[1]!);
  const last = loaded.at(-1);
  if (!last) throw new TabbifyError("IMAGE_LOAD_FAILED", `image archive ${archive} held no image`);
  return last;
}

/**
 * The image a spec runs, present on the daemon: its archive loaded, else its reference pulled
 * unless the daemon has it already (a deploy's pull with the registry token came first).
 */
export async function imageToRun(spec: WorkloadSpec): Promise<string> {
  const image = spec.imageArchive ? await load(spec.imageArchive, spec.image) : spec.image;
  if (!image) throw new TabbifyError("SPEC_INVALID", "docker runtime needs image (or imageArchive)");
  if (!(await localImage(image))) {
    try {
      await docker(["pull", "-q", image], 600_000);
    } catch (err) {
      throw new TabbifyError("IMAGE_PULL_FAILED", `cannot pull ${image}: ${(err as Error).message}`);
    }
  }
  return image;
}

/** Docker's `Created` as a string that sorts by time (fractions padded to nanoseconds). */
function sortableTime(created: string): string {
  return created.replace(/(?:\.(\d{1,9}))?Z$/, (_, f: string | undefined) => `.${(f ?? "").padEnd(9, "0")}Z`);
}

export class DockerRuntime implements Runtime {
  readonly kind = "docker" as const;

  constructor(private readonly options: RuntimeOptions = {}) {}

  async available(): Promise<boolean> {
    try {
      return await dockerDaemonAnswers(5_000);
    } catch {
      return false;
    }
  }

  async validate(spec: WorkloadSpec): Promise<void> {
    checkCommonSpec(spec, this.kind);
    const { image, imageArchive, limits } = spec;
    if (image === undefined && imageArchive === undefined) {
      throw new TabbifyError("SPEC_INVALID", "docker runtime needs image (or imageArchive)");
    }
    if (image !== undefined && (typeof image !== "string" || !imageReference.test(image))) {
      throw new TabbifyError("SPEC_INVALID", `"${String(image).slice(0, 200)}" is not an image reference`);
    }
    for (const field of ["command", "entry", "artifactDir"] as const) {
      if (spec[field] !== undefined)
        throw new TabbifyError("SPEC_INVALID", `docker runtime does not take ${field}`);
    }
    if (limits?.timeoutMs !== undefined) {
      throw new TabbifyError("SPEC_INVALID", "limits.timeoutMs is a per-request limit of the wasm runtime");
    }
    if (limits?.memoryMb !== undefined && (!Number.isFinite(limits.memoryMb) || limits.memoryMb < 6)) {
      throw new TabbifyError("SPEC_INVALID", "limits.memoryMb must be at least 6 (docker's minimum)");
    }
    for (const [name, value] of Object.entries(spec.env ?? {})) {
      if (value.includes("\n"))
        throw new TabbifyError("SPEC_INVALID", `env ${name} must not contain a newline`);
    }
    if (imageArchive !== undefined) {
      const info = await stat(imageArchive).catch(() => undefined);
      if (!info?.isFile())
        throw new TabbifyError("ARTIFACT_NOT_FOUND", `image archive ${imageArchive} does not exist`);
    }
    if (!(await this.available())) {
      throw new TabbifyError("RUNTIME_UNAVAILABLE", "the docker daemon does not answer on this host");
    }
  }

  async start(spec: WorkloadSpec, port: number, user?: WorkloadUser): Promise<Workload> {
    checkPort(port);
    await this.validate(spec);
    const image = await imageToRun(spec);
    const name = containerName(appUuidOf(spec));
    const labels: Record<string, string> = { "tabbify.port": String(port) };
    if (spec.appUuid) labels["tabbify.app"] = spec.appUuid;
    try {
      await withEnvFile(containerEnv(spec, port), (envFile) =>
        docker(["run", "-d", ...hardenedRunArgs(spec, { name, envFile, user, labels }), image], 120_000),
      );
    } catch (err) {
      await docker(["rm", "-f", name], 30_000).catch(() => undefined);
      throw new TabbifyError("WORKLOAD_START_FAILED", `cannot run ${image}: ${(err as Error).message}`);
    }
    const info = await inspectContainer(name);
    return new ContainerWorkload(
      name,
      info?.pid,
      { host: "127.0.0.1", port },
      await imageVersion(image),
      followLogs(name, this.options.output),
    );
  }

  /**
   * Takes over the newest running container of `spec.appUuid` that runs this spec (see
   * `runsSpec`) and removes every other container of the app, running or not: a killed runner's
   * leftovers that no one else owns. The image is compared by ID with what start would run,
   * resolved without pulling or loading anything: `spec.image` as docker resolves it locally
   * (with an archive too: Tabbify's archive tags, `tbf-img-<uuid>-v<N>`, name one pushed version,
   * which a previous load put here), else the image an archive-only spec's archive holds
   * (`archivedImageId`). A spec start would refuse throws as start does, touching nothing.
   */
  async adopt(spec: WorkloadSpec, user?: WorkloadUser): Promise<Workload | undefined> {
    const appUuid = appUuidOf(spec);
    if (appUuid === undefined) return undefined;
    await this.validate(spec);
    let names: string[];
    try {
      const { stdout } = await docker(
        ["ps", "-a", "--filter", `label=tabbify.app=${appUuid}`, "--format", "{{.Names}}"],
        15_000,
      );
      names = stdout.split("\n").filter((n) => n !== "");
    } catch (err) {
      throw new TabbifyError(
        "RUNTIME_UNAVAILABLE",
        `cannot list the containers of app ${appUuid}: ${(err as Error).message}`,
      );
    }
    if (names.length === 0) return undefined;
    // An archive-only spec names no image to compare with (what it holds is known only once
    // loaded), so its leftovers are removed and it starts afresh: a restart, never a wrong adoption.
    const image = spec.image === undefined ? undefined : await localImage(spec.image);
    const infos = await Promise.all(
      names.map(async (name) => ({ name, info: await inspectContainer(name) })),
    );
    const newest = infos
      .filter(
        (c): c is { name: string; info: ContainerInfo } =>
          !!c.info && !!image && runsSpec(c.info, spec, image, containerUser(user)),
      )
      .sort((a, b) => (sortableTime(a.info.created) < sortableTime(b.info.created) ? 1 : -1))[0];
    const adopted = newest && (await workloadOf(newest.name, newest.info, this.options.output));
    await Promise.all(
      names
        .filter((name) => name !== adopted?.name)
        .map((name) => docker(["rm", "-f", name], 30_000).catch(() => undefined)),
    );
    return adopted;
  }
}
