import { chmod, mkdir, realpath, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { resolveWithin } from "../core/contained-path.js";
import type { BuildRequest } from "../pipeline/executor.js";
import type { ValidBuild } from "./build-paths.js";
import { exec } from "./exec.js";
import { fail, type LineTail } from "./failure.js";

/** The context and Dockerfile inside the clone, following symlinks, which must not leave it. */
export async function resolvePaths(
  cloneDir: string,
  valid: ValidBuild,
  tail: LineTail,
): Promise<{ contextDir: string; dockerfilePath: string }> {
  const root = await realpath(cloneDir);
  const resolveInside = async (path: string, what: string): Promise<string> => {
    let resolved: Awaited<ReturnType<typeof resolveWithin>>;
    try {
      resolved = await resolveWithin(root, path);
    } catch {
      throw fail(
        "BUILD_FAILED",
        `the build ${what} ${path} does not exist in the repository at this commit`,
        {
          stage: "build",
          user_fault: true,
          log_tail: tail.lines(),
        },
      );
    }
    if ("outside" in resolved) {
      throw fail("BUILD_CONTEXT_INVALID", `the build ${what} ${path} resolves outside the repository`, {
        stage: "build",
        user_fault: true,
        log_tail: tail.lines(),
      });
    }
    return resolved.real;
  };
  return {
    contextDir: await resolveInside(valid.context, "context"),
    dockerfilePath: await resolveInside(valid.dockerfile, "dockerfile"),
  };
}

export interface DockerOptions {
  /** The docker CLI. */
  docker: string;
  /** `docker build --network` for RUN steps; unset uses the daemon's default. */
  buildNetwork: string | undefined;
  /** Local images of one app kept after a build; 0 keeps all. */
  keepImages: number;
}

/** The docker side of a build: build, push, the pushed digest, and pruning old images. */
export class DockerSteps {
  readonly #docker: string;
  readonly #buildNetwork: string | undefined;
  readonly #keepImages: number;
  /** Asked once: whether the buildx plugin is there. */
  #buildkit: Promise<boolean> | undefined;

  constructor(opts: DockerOptions) {
    this.#docker = opts.docker;
    this.#buildNetwork = opts.buildNetwork;
    this.#keepImages = opts.keepImages;
  }

  /** BuildKit needs the buildx plugin; without it the classic builder does the job. */
  #hasBuildkit(): Promise<boolean> {
    this.#buildkit ??= exec(this.#docker, ["buildx", "version"], { env: process.env }).then(
      (r) => r.code === 0,
      () => false,
    );
    return this.#buildkit;
  }

  /** Fails as an infrastructure error when dockerd does not answer, before blaming the Dockerfile. */
  async #requireDaemon(tail: LineTail, signal: AbortSignal | undefined): Promise<void> {
    const info = await exec(this.#docker, ["version", "--format", "{{.Server.Version}}"], {
      env: process.env,
      signal,
    }).catch((err: unknown) => ({ code: -1, lines: [String(err)] }));
    if (info.code !== 0) {
      throw fail("BUILD_FAILED", `the docker daemon does not answer: ${info.lines.slice(-3).join(" ")}`, {
        stage: "build",
        user_fault: false,
        log_tail: tail.lines(),
      });
    }
  }

  async build(
    contextDir: string,
    dockerfilePath: string,
    tags: string[],
    emit: (line: string) => void,
    tail: LineTail,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await this.#requireDaemon(tail, signal);
    const buildkit = await this.#hasBuildkit();
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_BUILDKIT: buildkit ? "1" : "0" };
    const args = ["build", "-f", dockerfilePath];
    for (const tag of tags) args.push("-t", tag);
    if (buildkit) args.push("--progress", "plain");
    if (this.#buildNetwork !== undefined) args.push("--network", this.#buildNetwork);
    // No --label: the classic builder turns each one into a step of its own (a container commit,
    // about a second each on vfs), and the tag already names the commit.
    args.push(contextDir);
    emit(
      `$ docker build -f ${relative(contextDir, dockerfilePath) || dockerfilePath} ${tags.map((t) => `-t ${t}`).join(" ")} .`,
    );
    const outcome = await exec(this.#docker, args, { cwd: contextDir, env, signal, onLine: emit });
    if (outcome.code !== 0) {
      // A daemon that went away mid-build is not the Dockerfile's fault.
      const daemonGone = outcome.lines.some((l) =>
        /Cannot connect to the Docker daemon|error during connect|connection refused/i.test(l),
      );
      const failing = tail.lines().filter((l) => /^(Step \d+\/\d+|#\d+ |ERROR|error|The command)/.test(l));
      const last = failing.at(-1) ?? outcome.lines.at(-1) ?? "";
      throw fail("BUILD_FAILED", `docker build failed (exit ${outcome.code}): ${last.slice(0, 300)}`, {
        stage: "build",
        user_fault: !daemonGone && !signal?.aborted,
        log_tail: tail.lines(),
      });
    }
  }

  async push(
    request: BuildRequest,
    buildDir: string,
    tags: string[],
    emit: (line: string) => void,
    tail: LineTail,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    // A config of its own per push: the registry token sits in a file only this build reads, and
    // docker sends `registrytoken` as the bearer token without a login round trip.
    const configDir = join(buildDir, "docker-config");
    await mkdir(configDir, { recursive: true, mode: 0o700 });
    await chmod(configDir, 0o700);
    const auths: Record<string, { registrytoken: string }> = {};
    if (request.push_token !== undefined) auths[request.registry] = { registrytoken: request.push_token };
    await writeFile(join(configDir, "config.json"), JSON.stringify({ auths }), { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: configDir };
    let digest: string | undefined;
    try {
      for (const tag of tags) {
        emit(`$ docker push ${tag}`);
        const outcome = await exec(this.#docker, ["push", tag], { env, signal, onLine: emit });
        if (outcome.code !== 0) {
          throw fail(
            "BUILD_PUSH_FAILED",
            `docker push ${tag} failed: ${(outcome.lines.at(-1) ?? "").slice(0, 300)}`,
            {
              stage: "push",
              user_fault: false,
              log_tail: tail.lines(),
            },
          );
        }
        if (digest === undefined) {
          for (const line of outcome.lines) {
            const m = /digest: (sha256:[0-9a-f]{64})/.exec(line);
            if (m) digest = m[1];
          }
        }
      }
    } finally {
      await rm(configDir, { recursive: true, force: true });
    }
    digest ??= await this.#repoDigest(tags[0]!, signal);
    if (digest === undefined) {
      throw fail("BUILD_PUSH_FAILED", `the registry's digest for ${tags[0]} is unknown after the push`, {
        stage: "push",
        user_fault: false,
        log_tail: tail.lines(),
      });
    }
    return digest;
  }

  /** The manifest digest docker recorded for the pushed repository, when the push output lacked it. */
  async #repoDigest(tag: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const repository = tag.slice(0, tag.lastIndexOf(":"));
    const out = await exec(this.#docker, ["image", "inspect", "--format", "{{json .RepoDigests}}", tag], {
      env: process.env,
      signal,
    });
    if (out.code !== 0) return undefined;
    try {
      const digests = JSON.parse(out.lines.join("")) as string[];
      const mine = digests.find((d) => d.startsWith(`${repository}@`));
      return mine?.slice(repository.length + 1);
    } catch {
      return undefined;
    }
  }

  /** Removes this app's local images beyond the newest `keepImages`, so a builder's disk does not fill. */
  async pruneImages(repository: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.#keepImages <= 0) return;
    const out = await exec(
      this.#docker,
      ["image", "ls", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}", repository],
      { env: process.env, signal },
    );
    if (out.code !== 0) return;
    // `docker image ls` lists newest first; all tags of one image go together.
    const ids: string[] = [];
    const refsById = new Map<string, string[]>();
    for (const line of out.lines) {
      const [id, ref] = line.trim().split(" ");
      if (!id || !ref || ref.endsWith(":<none>")) continue;
      if (!refsById.has(id)) {
        ids.push(id);
        refsById.set(id, []);
      }
      refsById.get(id)!.push(ref);
    }
    const old = ids.slice(this.#keepImages).flatMap((id) => refsById.get(id)!);
    if (old.length > 0) await exec(this.#docker, ["rmi", ...old], { env: process.env, signal });
  }
}
