import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmod, mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join, posix, relative } from "node:path";
import { isValidTenant } from "../auth/namespace.js";
import { resolveWithin } from "../core/contained-path.js";
import { TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import { checkRepoUrl, parseHttpRepoUrl, type RepoUrlPolicy } from "../core/repo-url.js";
import type { BuildRequest, BuildResult } from "../pipeline/executor.js";
import { redactUrl } from "../pipeline/github.js";

/**
 * The build step of a `builder`-tagged supervisor: clone a repository at a commit, `docker build`
 * it on the host's dockerd, push the image to our registry with a registry token, and report the
 * digest the registry stored. Every line of git and docker output is redacted and handed to the
 * caller as it comes, so build logs can stream into a deploy's events.
 */

export type BuildStage = "queued" | "clone" | "build" | "push" | "done" | "failed";
/** The stages a build can fail in; `validate` means it was refused before anything ran. */
export type FailedStage = "validate" | "clone" | "build" | "push";

/** What a failed build carries in `TabbifyError.detail` (safe to show: redacted, no secrets). */
export interface BuildFailureDetail {
  stage: FailedStage;
  user_fault: boolean;
  log_tail: string[];
}

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

const SHA_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** `host[:port]` or `[v6]:port`, as docker reads a registry in an image reference. */
const REGISTRY_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/;
const MAX_LINE = 4096;

function fail(code: string, message: string, detail: BuildFailureDetail): TabbifyError {
  return new TabbifyError(code, message, detail);
}

/** The request checked and normalised; refused here means nothing was cloned. */
interface ValidBuild {
  request: BuildRequest;
  repository: string;
  /** POSIX path inside the clone, "." for its root. */
  context: string;
  dockerfile: string;
}

function invalid(message: string): TabbifyError {
  return fail("BUILD_REQUEST_INVALID", message, { stage: "validate", user_fault: true, log_tail: [] });
}

/** A path from tabbify.toml, normalised; undefined when it is absolute or leaves the repository. */
function insideRepo(path: string): string | undefined {
  if (path.includes("\0") || path.includes("\\")) return undefined;
  if (path.startsWith("/")) return undefined;
  const normal = posix.normalize(path === "" ? "." : path).replace(/\/+$/, "");
  if (normal === ".." || normal.startsWith("../")) return undefined;
  return normal === "" ? "." : normal;
}

/** Checks a build request's shape and paths (throws BUILD_REQUEST_INVALID / BUILD_CONTEXT_INVALID). */
export function validateBuildRequest(body: unknown): ValidBuild {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalid("the build request must be a JSON object");
  }
  const b = body as Record<string, unknown>;
  const str = (key: string, required: boolean): string | undefined => {
    const v = b[key];
    if (v === undefined || v === null) {
      if (required) throw invalid(`${key} is required`);
      return undefined;
    }
    if (typeof v !== "string" || v === "") throw invalid(`${key} must be a non-empty string`);
    return v;
  };
  const repoUrl = str("repo_url", true)!;
  const parsedUrl = parseHttpRepoUrl(repoUrl);
  if ("problem" in parsedUrl) throw invalid(parsedUrl.problem);
  const ref = str("ref", true)!;
  if (ref.startsWith("-") || !/^[A-Za-z0-9._/-]+$/.test(ref) || ref.includes("..")) {
    throw invalid("ref must be a commit sha, branch or tag name");
  }
  const tenant = str("tenant", true)!;
  if (!isValidTenant(tenant)) throw invalid("tenant is not a valid registry path component");
  const appUuid = str("app_uuid", true)!;
  if (!UUID_RE.test(appUuid)) throw invalid("app_uuid must be a UUID");
  const registry = str("registry", false) ?? str("registry_ula", false);
  if (registry === undefined) throw invalid("registry is required");
  if (!REGISTRY_RE.test(registry)) throw invalid("registry must be host[:port] without scheme or path");
  const expected = `${registry}/${tenant.toLowerCase()}/${appUuid.toLowerCase()}`;
  const repository = str("image_repository", false) ?? expected;
  if (repository !== expected) {
    throw invalid(`image_repository must be ${expected} (registry/tenant/app_uuid)`);
  }
  const buildKind = str("build_kind", false) ?? "docker";
  if (buildKind !== "docker") throw invalid(`build_kind ${buildKind} is not supported (only docker)`);
  const stableTag = str("stable_tag", false);
  if (stableTag !== undefined && (!TAG_RE.test(stableTag) || SHA_RE.test(stableTag))) {
    throw invalid("stable_tag must be a docker tag that is not a commit sha");
  }
  const contextRaw = str("context", false) ?? ".";
  const dockerfileRaw = str("dockerfile", false) ?? "Dockerfile";
  const context = insideRepo(contextRaw);
  const dockerfile = insideRepo(dockerfileRaw);
  for (const [name, raw, normal] of [
    ["context", contextRaw, context],
    ["dockerfile", dockerfileRaw, dockerfile],
  ] as const) {
    if (normal === undefined) {
      throw fail(
        "BUILD_CONTEXT_INVALID",
        `build ${name} ${JSON.stringify(raw.slice(0, 200))} is not a path inside the repository`,
        { stage: "validate", user_fault: true, log_tail: [] },
      );
    }
  }
  if (dockerfile === ".") throw invalid("dockerfile must name a file");
  const cloneToken = str("clone_token", false);
  const pushToken = str("push_token", false);
  const manifestToml = str("manifest_toml", false);
  const request: BuildRequest = {
    repo_url: repoUrl,
    ref,
    tenant,
    app_uuid: appUuid.toLowerCase(),
    registry,
    image_repository: repository,
    build_kind: "docker",
    context: context!,
    dockerfile: dockerfile!,
  };
  if (cloneToken !== undefined) request.clone_token = cloneToken;
  if (pushToken !== undefined) request.push_token = pushToken;
  if (stableTag !== undefined) request.stable_tag = stableTag;
  if (manifestToml !== undefined) request.manifest_toml = manifestToml;
  return { request, repository, context: context!, dockerfile: dockerfile! };
}

/** Keeps the last `size` lines. */
class LineTail {
  readonly #lines: string[] = [];
  constructor(private readonly size: number) {}
  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.size) this.#lines.splice(0, this.#lines.length - this.size);
  }
  lines(): string[] {
    return [...this.#lines];
  }
}

interface RunOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal | undefined;
  /** Called with each redacted output line (stdout and stderr alike). */
  onLine?: (line: string) => void;
}

interface RunOutcome {
  code: number | null;
  /** Redacted output, for parsing (digest lines) — never whole images, only command chatter. */
  lines: string[];
}

/** Queued work in the scheduler. */
interface Job {
  appUuid: string;
  start: () => void;
}

export class Builder {
  readonly #workDir: string;
  readonly #log: Logger;
  readonly #docker: string;
  readonly #git: string;
  readonly #maxParallel: number;
  readonly #keepImages: number;
  readonly #tailLines: number;
  readonly #buildNetwork: string | undefined;
  /** Recent builds per app, oldest first (a few, so a queued build does not hide a running one). */
  readonly #progress = new Map<string, BuildProgress[]>();
  readonly #queue: Job[] = [];
  readonly #runningApps = new Set<string>();
  #buildkit: Promise<boolean> | undefined;
  readonly #repoPolicy: RepoUrlPolicy;

  constructor(opts: BuilderOptions) {
    this.#workDir = opts.workDir;
    this.#log = opts.logger ?? silentLogger;
    this.#docker = opts.docker ?? "docker";
    this.#git = opts.git ?? "git";
    this.#maxParallel = Math.max(1, opts.maxParallel ?? Math.min(4, Math.floor(cpus().length / 2)));
    this.#keepImages = opts.keepImages ?? 3;
    this.#tailLines = opts.tailLines ?? 60;
    this.#buildNetwork = opts.buildNetwork;
    this.#repoPolicy = opts.repoPolicy ?? { allowPrivate: false };
  }

  /**
   * The repo_url's host checked against the policy (every resolved address): the addresses the
   * clone is pinned to. Throws BUILD_REQUEST_INVALID, which the route answers with 400 before
   * anything runs.
   */
  async checkRepo(request: Pick<BuildRequest, "repo_url" | "registry">): Promise<string[]> {
    const base = this.#repoPolicy;
    const checked = await checkRepoUrl(request.repo_url, {
      ...base,
      platformHosts: () => [...(base.platformHosts?.() ?? []), request.registry],
    });
    if ("problem" in checked) throw invalid(checked.problem);
    return checked.addresses;
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
    request: BuildRequest,
    onLog: (line: string) => void,
    signal?: AbortSignal,
    onStage?: (stage: BuildStage) => void,
  ): Promise<BuildResult> {
    const valid = validateBuildRequest(request);
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
      const commitSha = await this.#clone(request, cloneDir, emit, tail, signal);
      progress.commit_sha = commitSha;

      setStage("build");
      const { contextDir, dockerfilePath } = await this.#resolvePaths(cloneDir, valid, tail);
      const shaTag = `${valid.repository}:${commitSha}`;
      const tags = [shaTag];
      if (request.stable_tag !== undefined) tags.push(`${valid.repository}:${request.stable_tag}`);
      await this.#dockerBuild(contextDir, dockerfilePath, tags, emit, tail, signal);

      setStage("push");
      const digest = await this.#push(request, buildDir, tags, emit, tail, signal);
      this.#log.info("build pushed", {
        app_uuid: request.app_uuid,
        image_ref: shaTag,
        digest,
        ms: Date.now() - started,
      });
      await this.#pruneImages(valid.repository, signal).catch((err: unknown) =>
        this.#log.warn("removing old images failed", { error: redactUrl(String(err)) }),
      );
      return { image_ref: shaTag, digest, commit_sha: commitSha };
    } finally {
      await rm(buildDir, { recursive: true, force: true }).catch((err: unknown) =>
        this.#log.warn("removing the build dir failed", { dir: buildDir, error: String(err) }),
      );
    }
  }

  /**
   * git with no user or system config, no prompts, the clone token (if any) as a header, no
   * HTTP redirects (one could lead anywhere the check refused) and the repo host pinned to the
   * addresses `checkRepo` approved (no second lookup for a rebinding DNS to answer).
   */
  #gitEnv(request: BuildRequest, pinned: string[]): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"],
      HOME: this.#workDir,
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_ASKPASS: "/bin/false",
      LC_ALL: "C",
    };
    const config: [string, string][] = [
      ["credential.helper", ""],
      ["protocol.allow", "never"],
      ["protocol.https.allow", "always"],
      ["protocol.http.allow", "always"],
      ["advice.detachedHead", "false"],
      ["http.followRedirects", "false"],
    ];
    const url = new URL(request.repo_url);
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (pinned.length > 0 && host !== pinned[0]) {
      const addresses = pinned.map((a) => (a.includes(":") ? `[${a}]` : a)).join(",");
      config.push(["http.curloptResolve", `${host}:${port}:${addresses}`]);
    }
    if (request.clone_token !== undefined) {
      // The token rides in an environment variable, not in the URL: a URL would show in the
      // process list (git passes it to git-remote-http as an argument) and could end up in
      // .git/config; the environment is readable only by this user.
      const basic = Buffer.from(`x-access-token:${request.clone_token}`).toString("base64");
      config.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
    }
    env["GIT_CONFIG_COUNT"] = String(config.length);
    config.forEach(([key, value], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = key;
      env[`GIT_CONFIG_VALUE_${i}`] = value;
    });
    return env;
  }

  async #clone(
    request: BuildRequest,
    cloneDir: string,
    emit: (line: string) => void,
    tail: LineTail,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    let pinned: string[];
    try {
      pinned = await this.checkRepo(request);
    } catch (err) {
      throw fail("BUILD_CLONE_FAILED", (err as Error).message, {
        stage: "clone",
        user_fault: true,
        log_tail: tail.lines(),
      });
    }
    const env = this.#gitEnv(request, pinned);
    const git = (args: string[], onLine = emit) =>
      this.#exec(this.#git, args, { cwd: cloneDir, env, signal, onLine });
    // The URL as our check parsed it, so git cannot read a host the check did not see.
    const url = new URL(request.repo_url).href;
    const cloneFailed = (what: string) =>
      fail("BUILD_CLONE_FAILED", `${what} ${redactUrl(url)} at ${request.ref} failed`, {
        stage: "clone",
        user_fault: false,
        log_tail: tail.lines(),
      });
    await mkdir(cloneDir, { recursive: true });
    emit(`$ git fetch --depth 1 ${redactUrl(url)} ${request.ref}`);
    if ((await git(["init", "--quiet", "."])).code !== 0) throw cloneFailed("git init for");
    const shallow = await git(["fetch", "--quiet", "--depth", "1", "--no-tags", url, request.ref]);
    if (shallow.code !== 0) {
      // Servers that refuse a bare sha in `want` (no allowReachableSHA1InWant) still serve it
      // through their refs: fetch everything, then check the sha out.
      if (!SHA_RE.test(request.ref)) throw cloneFailed("fetching");
      emit("shallow fetch by sha refused; fetching all branches and tags");
      const full = await git([
        "fetch",
        "--quiet",
        "--no-tags",
        url,
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
      ]);
      if (full.code !== 0) throw cloneFailed("fetching");
      if ((await git(["checkout", "--quiet", "--detach", request.ref])).code !== 0) {
        throw cloneFailed("checking out");
      }
    } else if ((await git(["checkout", "--quiet", "--detach", "FETCH_HEAD"])).code !== 0) {
      throw cloneFailed("checking out");
    }
    const head = await this.#exec(this.#git, ["rev-parse", "HEAD"], { cwd: cloneDir, env, signal });
    const sha = head.lines
      .find((l) => SHA_RE.test(l.trim()))
      ?.trim()
      .toLowerCase();
    if (head.code !== 0 || sha === undefined) throw cloneFailed("resolving HEAD of");
    if (SHA_RE.test(request.ref) && sha !== request.ref.toLowerCase()) {
      throw fail("BUILD_CLONE_FAILED", `asked for commit ${request.ref} but checked out ${sha}`, {
        stage: "clone",
        user_fault: false,
        log_tail: tail.lines(),
      });
    }
    emit(`checked out ${sha}`);
    return sha;
  }

  /** The context and Dockerfile inside the clone, following symlinks, which must not leave it. */
  async #resolvePaths(
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

  /** BuildKit needs the buildx plugin; without it the classic builder does the job. */
  #hasBuildkit(): Promise<boolean> {
    this.#buildkit ??= this.#exec(this.#docker, ["buildx", "version"], { env: process.env }).then(
      (r) => r.code === 0,
      () => false,
    );
    return this.#buildkit;
  }

  /** Fails as an infrastructure error when dockerd does not answer, before blaming the Dockerfile. */
  async #requireDaemon(tail: LineTail, signal: AbortSignal | undefined): Promise<void> {
    const info = await this.#exec(this.#docker, ["version", "--format", "{{.Server.Version}}"], {
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

  async #dockerBuild(
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
    const outcome = await this.#exec(this.#docker, args, { cwd: contextDir, env, signal, onLine: emit });
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

  async #push(
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
        const outcome = await this.#exec(this.#docker, ["push", tag], { env, signal, onLine: emit });
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
    const out = await this.#exec(
      this.#docker,
      ["image", "inspect", "--format", "{{json .RepoDigests}}", tag],
      {
        env: process.env,
        signal,
      },
    );
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
  async #pruneImages(repository: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.#keepImages <= 0) return;
    const out = await this.#exec(
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
    if (old.length > 0) await this.#exec(this.#docker, ["rmi", ...old], { env: process.env, signal });
  }

  /** Runs a command, streaming its output line by line (redacted), killing it on abort. */
  #exec(command: string, args: string[], opts: RunOptions): Promise<RunOutcome> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) {
        resolve({ code: null, lines: ["cancelled"] });
        return;
      }
      const child = spawn(command, args, {
        cwd: opts.cwd,
        env: opts.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const lines: string[] = [];
      const onLine = (raw: string) => {
        const line = redactUrl(raw);
        if (line.trim() === "") return;
        if (lines.length < 10_000) lines.push(line);
        opts.onLine?.(line);
      };
      const splitter = () => {
        let rest = "";
        return {
          data: (chunk: Buffer) => {
            rest += chunk.toString("utf8");
            const parts = rest.split(/\r?\n|\r/);
            rest = parts.pop() ?? "";
            for (const part of parts) onLine(part);
            // A line with no end in sight is passed on in pieces rather than held in memory.
            if (rest.length > MAX_LINE) {
              onLine(rest);
              rest = "";
            }
          },
          end: () => {
            if (rest !== "") onLine(rest);
            rest = "";
          },
        };
      };
      const out = splitter();
      const err = splitter();
      child.stdout?.on("data", out.data);
      child.stderr?.on("data", err.data);
      const onAbort = () => child.kill("SIGTERM");
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      child.on("error", (e) => {
        opts.signal?.removeEventListener("abort", onAbort);
        reject(new Error(`${command} could not be started: ${e.message}`));
      });
      child.on("close", (code) => {
        opts.signal?.removeEventListener("abort", onAbort);
        out.end();
        err.end();
        resolve({ code, lines });
      });
    });
  }
}
