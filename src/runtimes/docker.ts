/**
 * The `docker` runtime: an image (pulled, or loaded from a `docker save` archive) run on the real
 * dockerd with `--network host`, so the app binds 127.0.0.1:PORT on the host like any other
 * workload. Everything goes through the docker CLI (execFile, never a shell).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import {
  checkCommonSpec,
  checkPort,
  DEFAULT_GRACE_MS,
  type RuntimeOptions,
  type WorkloadOutput,
} from "./child.js";
import { imageRepository } from "./registry-pull.js";
import type { Runtime, Upstream, Workload, WorkloadSpec } from "./runtime.js";

interface DockerResult {
  stdout: string;
  stderr: string;
}

function docker(args: string[], timeoutMs = 60_000): Promise<DockerResult> {
  return new Promise((resolve, reject) => {
    execFile("docker", args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const detail = (stderr || err.message).trim().split("\n").slice(-5).join("\n");
        const failure = new Error(`docker ${args[0]} failed: ${detail}`) as Error & { stderr: string };
        failure.stderr = stderr;
        reject(failure);
      } else resolve({ stdout, stderr });
    });
  });
}

/** Image references as the docker CLI accepts them: [host[:port]/]path[:tag][@digest]. */
const imageReference =
  /^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$|^sha256:[a-f0-9]{64}$/;

let sequence = 0;

/** `tbf-<app uuid or random>-<seq>`: unique across runner restarts (the time part) and within one. */
function containerName(appUuid: string | undefined): string {
  const app =
    appUuid && /^[0-9a-f-]{36}$/i.test(appUuid) ? appUuid.toLowerCase() : randomBytes(4).toString("hex");
  return `tbf-${app}-${Date.now().toString(36)}${(sequence++).toString(36)}`;
}

async function imageVersion(image: string): Promise<string | undefined> {
  try {
    const { stdout } = await docker(
      ["image", "inspect", "-f", "{{json .RepoDigests}} {{.Id}}", image],
      15_000,
    );
    const [digests, id] = stdout.trim().split(" ");
    const all = JSON.parse(digests ?? "[]") as string[];
    // An image tagged into several repositories has one digest per repository: report the one of
    // the repository it was asked for, which is what the registry stored for this deploy.
    const repository = imageRepository(image);
    const repoDigest = all.find((d) => d.startsWith(`${repository}@`)) ?? all[0];
    return repoDigest ?? id;
  } catch {
    return undefined;
  }
}

async function imagePresent(image: string): Promise<boolean> {
  try {
    await docker(["image", "inspect", "-f", "{{.Id}}", image], 15_000);
    return true;
  } catch {
    return false;
  }
}

/** Follows a container's log into the runtime's output; ends by itself when the container goes. */
function followLogs(name: string, output: WorkloadOutput | undefined): ChildProcess | undefined {
  const target = output ?? "inherit";
  if (target === "ignore") return undefined;
  const streamed = typeof target === "object";
  const child = spawn("docker", ["logs", "-f", name], {
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
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
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
      const done = () => {
        this.hasExited = true;
        const code = Number.parseInt(out.trim(), 10);
        resolve({ code: Number.isNaN(code) ? null : code, signal: null });
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

async function inspectContainer(
  name: string,
): Promise<{ pid: number | undefined; running: boolean; env: string[]; image: string } | undefined> {
  try {
    const { stdout } = await docker(
      ["container", "inspect", "-f", "{{json .State}}|{{json .Config}}", name],
      15_000,
    );
    const [state, config] = stdout.trim().split("|") as [string, string];
    const s = JSON.parse(state) as { Pid: number; Running: boolean };
    const c = JSON.parse(config) as { Env: string[] | null; Image: string };
    return { pid: s.Pid > 0 ? s.Pid : undefined, running: s.Running, env: c.Env ?? [], image: c.Image };
  } catch {
    return undefined;
  }
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
  if (!info?.running) return undefined;
  const port = Number(info.env.find((e) => e.startsWith("PORT="))?.slice(5));
  if (!Number.isInteger(port) || port <= 0) return undefined;
  return new ContainerWorkload(
    name,
    info.pid,
    { host: "127.0.0.1", port },
    await imageVersion(info.image),
    followLogs(name, options.output),
  );
}

export class DockerRuntime implements Runtime {
  readonly kind = "docker" as const;

  constructor(private readonly options: RuntimeOptions = {}) {}

  async available(): Promise<boolean> {
    try {
      await docker(["info", "--format", "{{.ServerVersion}}"], 5_000);
      return true;
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

  /** `docker load`s an archive (.tar or .tar.gz) and returns the image to run from it. */
  private async load(archive: string, wanted: string | undefined): Promise<string> {
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

  async start(spec: WorkloadSpec, port: number): Promise<Workload> {
    checkPort(port);
    await this.validate(spec);
    const image = spec.imageArchive ? await this.load(spec.imageArchive, spec.image) : spec.image!;
    if (!(await imagePresent(image))) {
      try {
        await docker(["pull", "-q", image], 600_000);
      } catch (err) {
        throw new TabbifyError("IMAGE_PULL_FAILED", `cannot pull ${image}: ${(err as Error).message}`);
      }
    }
    const name = containerName(spec.appUuid);
    // Values go through a 0600 env file, not argv, where any local user could read them in ps.
    const envDir = await mkdtemp(join(tmpdir(), "tabbify-docker-env-"));
    const envFile = join(envDir, "env");
    const env = { ...spec.env, HOST: "127.0.0.1", PORT: String(port) };
    await writeFile(
      envFile,
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
      { mode: 0o600 },
    );
    const args = ["run", "-d", "--network", "host", "--name", name, "--env-file", envFile];
    args.push("--label", `tabbify.port=${port}`);
    if (spec.appUuid) args.push("--label", `tabbify.app=${spec.appUuid}`);
    if (spec.limits?.memoryMb) args.push("--memory", `${Math.floor(spec.limits.memoryMb)}m`);
    args.push(image);
    try {
      await docker(args, 120_000);
    } catch (err) {
      await docker(["rm", "-f", name], 30_000).catch(() => undefined);
      throw new TabbifyError("WORKLOAD_START_FAILED", `cannot run ${image}: ${(err as Error).message}`);
    } finally {
      await rm(envDir, { recursive: true, force: true });
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
}
