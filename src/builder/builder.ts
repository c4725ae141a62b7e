import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import type { RepoUrlPolicy } from "../core/repo-url.js";
import type { BuildRequest, BuildResult } from "../pipeline/executor.js";
import { redactUrl } from "../pipeline/github.js";
import { resolveBuild, type ValidBuild } from "./build-paths.js";
import { DockerSteps, resolvePaths } from "./docker-steps.js";
import { MAX_LINE } from "./exec.js";
import { type BuildFailureDetail, type BuildStage, type FailedStage, fail, LineTail } from "./failure.js";
import { checkRepo, cloneRepo } from "./git-clone.js";
import type { BuildRequestBody } from "./schemas.js";

export { resolveBuild } from "./build-paths.js";
export type { BuildFailureDetail, BuildStage, FailedStage } from "./failure.js";

/**
 * The build step of a `builder`-tagged supervisor: clone a repository at a commit, `docker build`
 * it on the host's dockerd, push the image to our registry with a registry token, and report the
 * digest the registry stored. Every line of git and docker output is redacted and handed to the
 * caller as it comes, so build logs can stream into a deploy's events. This file holds the
 * per-app queue and progress and runs the steps in order: build-paths.ts, git-clone.ts,
 * docker-steps.ts (processes through exec.ts).
 */

/** The latest build of one app, as `GET /v1/build/:uuid/progress` shows it. */
export interface BuildProgress {
  build_id: string;
  app_uuid: string;
  stage: BuildStage;
  /** The ref asked for; the resolved sha once cloned. */
  ref: string;
  commit_sha?: string;
  image_ref?: string;
  digest?: string;
  error?: { code: string; message: string; stage: FailedStage; user_fault: boolean };
  queued_at: string;
  started_at?: string;
  finished_at?: string;
  log_tail: string[];
}

export interface BuilderOptions {
  /** Clones and temporary docker configs live under here; nothing is kept after a build. */
  workDir: string;
  logger?: Logger;
  /** The docker CLI. Default `docker` on PATH. */
  docker?: string;
  /** The git CLI. Default `git` on PATH. */
  git?: string;
  /** Builds of different apps that may run at once. Default: one per two cores, at least 1, at most 4. */
  maxParallel?: number;
  /** Local images of one app kept after a build (older ones are removed). Default 3; 0 keeps all. */
  keepImages?: number;
  /** Lines kept for `log_tail` in progress and failures. Default 60. */
  tailLines?: number;
  /** `docker build --network` for RUN steps; unset uses the daemon's default. */
  buildNetwork?: string;
  /**
   * Where a repo_url may point (SSRF guard); the request's registry counts as a platform host
   * too. Default: loopback, link-local and the platform's addresses refused.
   */
  repoPolicy?: RepoUrlPolicy;
}

/** Queued work in the scheduler. */
interface Job {
  appUuid: string;
  start: () => void;
}

export class Builder {
  readonly #workDir: string;
  readonly #log: Logger;
  readonly #git: string;
  readonly #dockerSteps: DockerSteps;
  readonly #maxParallel: number;
  readonly #tailLines: number;
  /** Recent builds per app, oldest first (a few, so a queued build does not hide a running one). */
  readonly #progress = new Map<string, BuildProgress[]>();
  readonly #queue: Job[] = [];
  readonly #runningApps = new Set<string>();
  readonly #repoPolicy: RepoUrlPolicy;

  constructor(opts: BuilderOptions) {
    this.#workDir = opts.workDir;
    this.#log = opts.logger ?? silentLogger;
    this.#git = opts.git ?? "git";
    this.#maxParallel = Math.max(1, opts.maxParallel ?? Math.min(4, Math.floor(cpus().length / 2)));
    this.#tailLines = opts.tailLines ?? 60;
    this.#dockerSteps = new DockerSteps({
      docker: opts.docker ?? "docker",
      buildNetwork: opts.buildNetwork,
      keepImages: opts.keepImages ?? 3,
    });
    this.#repoPolicy = opts.repoPolicy ?? { allowPrivate: false };
  }

  /**
   * The repo_url's host checked against the policy (every resolved address): the addresses the
   * clone is pinned to. Throws BUILD_REQUEST_INVALID, which the route answers with 400 before
   * anything runs.
   */
  checkRepo(request: Pick<BuildRequest, "repo_url" | "registry">): Promise<string[]> {
    return checkRepo(request, this.#repoPolicy);
  }

  /** The app's running build, else its newest one (queued or finished); undefined when none is known. */
  progress(appUuid: string): BuildProgress | undefined {
    const builds = this.#progress.get(appUuid.toLowerCase()) ?? [];
    const p =
      builds.find((b) => b.stage === "clone" || b.stage === "build" || b.stage === "push") ?? builds.at(-1);
    return p ? { ...p, log_tail: [...p.log_tail] } : undefined;
  }

  /**
   * Clones, builds and pushes. Builds of one app run one after another; builds of different apps
   * share `maxParallel` slots. Throws TabbifyError BUILD_REQUEST_INVALID / BUILD_CONTEXT_INVALID
   * (nothing ran), BUILD_CLONE_FAILED, BUILD_FAILED or BUILD_PUSH_FAILED, each with
   * {@link BuildFailureDetail}.
   */
  async build(
    request: BuildRequestBody,
    onLog: (line: string) => void,
    signal?: AbortSignal,
    onStage?: (stage: BuildStage) => void,
  ): Promise<BuildResult> {
    const valid = resolveBuild(request);
    const appUuid = valid.request.app_uuid;
    const secrets = [valid.request.clone_token, valid.request.push_token].filter(
      (s): s is string => s !== undefined && s.length >= 4,
    );
    const progress: BuildProgress = {
      build_id: randomUUID(),
      app_uuid: appUuid,
      stage: "queued",
      ref: valid.request.ref,
      queued_at: new Date().toISOString(),
      log_tail: [],
    };
    const builds = this.#progress.get(appUuid) ?? [];
    builds.push(progress);
    if (builds.length > 5) builds.splice(0, builds.length - 5);
    this.#progress.set(appUuid, builds);
    const setStage = (stage: BuildStage) => {
      progress.stage = stage;
      try {
        onStage?.(stage);
      } catch (err) {
        this.#log.warn("build stage listener threw", { error: String(err) });
      }
    };
    const tail = new LineTail(this.#tailLines);
    const emit = (raw: string) => {
      const line = secrets.reduce(
        (text, secret) => text.split(secret).join("***"),
        redactUrl(raw.length > MAX_LINE ? `${raw.slice(0, MAX_LINE)}…` : raw),
      );
      tail.push(line);
      progress.log_tail = tail.lines();
      try {
        onLog(line);
      } catch (err) {
        this.#log.warn("build log listener threw", { error: String(err) });
      }
    };

    try {
      await this.#acquire(appUuid, signal);
    } catch (err) {
      progress.finished_at = new Date().toISOString();
      setStage("failed");
      throw err;
    }
    try {
      progress.started_at = new Date().toISOString();
      const result = await this.#run(valid, progress, setStage, emit, tail, signal);
      progress.commit_sha = result.commit_sha;
      progress.image_ref = result.image_ref;
      progress.digest = result.digest;
      progress.finished_at = new Date().toISOString();
      setStage("done");
      return result;
    } catch (err) {
      let failure = this.#asFailure(err, progress, tail);
      let detail = failure.detail as BuildFailureDetail;
      if (signal?.aborted) {
        failure = fail("BUILD_CANCELLED", `the build was cancelled during ${detail.stage}`, {
          ...detail,
          user_fault: false,
        });
      }
      // Tool output is redacted line by line already; this also covers messages built from it.
      const scrub = (text: string) =>
        secrets.reduce((t, secret) => t.split(secret).join("***"), redactUrl(text));
      detail = failure.detail as BuildFailureDetail;
      detail = { stage: detail.stage, user_fault: detail.user_fault, log_tail: detail.log_tail.map(scrub) };
      failure = new TabbifyError(failure.code, scrub(failure.message), detail);
      progress.error = {
        code: failure.code,
        message: failure.message,
        stage: detail.stage,
        user_fault: detail.user_fault,
      };
      progress.finished_at = new Date().toISOString();
      setStage("failed");
      throw failure;
    } finally {
      this.#release(appUuid);
    }
  }

  /** Any error as a staged TabbifyError whose message and tail carry no secrets. */
  #asFailure(err: unknown, progress: BuildProgress, tail: LineTail): TabbifyError {
    if (err instanceof TabbifyError && typeof err.detail === "object" && err.detail !== null) return err;
    const stage: FailedStage =
      progress.stage === "clone" || progress.stage === "build" || progress.stage === "push"
        ? progress.stage
        : "clone";
    const code =
      stage === "clone" ? "BUILD_CLONE_FAILED" : stage === "build" ? "BUILD_FAILED" : "BUILD_PUSH_FAILED";
    const message = redactUrl(err instanceof Error ? err.message : String(err));
    return fail(code, `${stage} failed: ${message}`, { stage, user_fault: false, log_tail: tail.lines() });
  }

  async #acquire(appUuid: string, signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const job: Job = { appUuid, start: resolve };
      this.#queue.push(job);
      const onAbort = () => {
        const i = this.#queue.indexOf(job);
        if (i >= 0) {
          this.#queue.splice(i, 1);
          reject(
            fail("BUILD_CANCELLED", "the build was cancelled while queued", {
              stage: "clone",
              user_fault: false,
              log_tail: [],
            }),
          );
        }
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      job.start = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      this.#pump();
    });
  }

  #release(appUuid: string): void {
    this.#runningApps.delete(appUuid);
    this.#pump();
  }

  /** Starts queued jobs, oldest first, while slots are free and their app is not already building. */
  #pump(): void {
    for (let i = 0; i < this.#queue.length && this.#runningApps.size < this.#maxParallel; ) {
      const job = this.#queue[i]!;
      if (this.#runningApps.has(job.appUuid)) {
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      this.#runningApps.add(job.appUuid);
      job.start();
    }
  }

  async #run(
    valid: ValidBuild,
    progress: BuildProgress,
    setStage: (stage: BuildStage) => void,
    emit: (line: string) => void,
    tail: LineTail,
    signal: AbortSignal | undefined,
  ): Promise<BuildResult> {
    const { request } = valid;
    await mkdir(this.#workDir, { recursive: true });
    const buildDir = await mkdtemp(join(this.#workDir, "build-"));
    const started = Date.now();
    this.#log.info("build started", {
      app_uuid: request.app_uuid,
      repo: redactUrl(request.repo_url),
      ref: request.ref,
    });
    try {
      setStage("clone");
      const cloneDir = join(buildDir, "src");
      const commitSha = await cloneRepo(
        { git: this.#git, home: this.#workDir, checkRepo: (r) => this.checkRepo(r) },
        request,
        cloneDir,
        emit,
        tail,
        signal,
      );
      progress.commit_sha = commitSha;

      setStage("build");
      const { contextDir, dockerfilePath } = await resolvePaths(cloneDir, valid, tail);
      const shaTag = `${valid.repository}:${commitSha}`;
      const tags = [shaTag];
      if (request.stable_tag !== undefined) tags.push(`${valid.repository}:${request.stable_tag}`);
      await this.#dockerSteps.build(contextDir, dockerfilePath, tags, emit, tail, signal);

      setStage("push");
      const digest = await this.#dockerSteps.push(request, buildDir, tags, emit, tail, signal);
      this.#log.info("build pushed", {
        app_uuid: request.app_uuid,
        image_ref: shaTag,
        digest,
        ms: Date.now() - started,
      });
      await this.#dockerSteps
        .pruneImages(valid.repository, signal)
        .catch((err: unknown) =>
          this.#log.warn("removing old images failed", { error: redactUrl(String(err)) }),
        );
      return { image_ref: shaTag, digest, commit_sha: commitSha };
    } finally {
      await rm(buildDir, { recursive: true, force: true }).catch((err: unknown) =>
        this.#log.warn("removing the build dir failed", { dir: buildDir, error: String(err) }),
      );
    }
  }
}
