import type { Static } from "@sinclair/typebox";
import type { BuildAnswer, BuildFailure, BuildRequestBody, BuildStreamLine } from "../builder/schemas.js";
import { TabbifyError } from "../core/errors.js";
import { SupervisorApi } from "../supervisor/client.js";
import type { DeployBody, supervisorSchemas } from "../supervisor/schemas.js";
import type {
  BuildRequest,
  BuildResult,
  ManifestSource,
  SupervisorAppStatus,
  SupervisorClient,
  SupervisorDeployReply,
  SupervisorDeployRequest,
  SupervisorMigrateReply,
  TokenSource,
} from "./executor.js";
import {
  type AuthScheme,
  appJwt,
  fetchFile,
  installationToken,
  loadAppPrivateKey,
  redactUrl,
  repoCoordinates,
  repoInstallation,
} from "./github.js";
import { TABBIFY_TOML } from "./tabbify-toml.js";

/**
 * The supervisor's answers, typed by its route schemas (src/supervisor/schemas.ts) as a peer
 * that may be older or newer sends them: every field may be missing. The bodies sent are checked
 * against the route's body schema with `satisfies`, so a schema change that this client no longer
 * meets fails the typecheck.
 */
type SupervisorSchemas = typeof supervisorSchemas;
type DeployAnswer = Partial<Static<SupervisorSchemas["deploy"]["response"][200]>>;
type MigrateAnswer = Partial<Static<SupervisorSchemas["migrate"]["response"][200]>>;
type AppAnswer = Partial<Static<SupervisorSchemas["describe"]["response"][200]>>;
type DeployWire = Static<typeof DeployBody>;

/**
 * The real implementations of the executor's interfaces, kept thin: one HTTP call each, errors
 * turned into TabbifyErrors whose messages carry the peer's own `{"error": …}` text.
 */

export interface HttpSupervisorClientOptions {
  /** Base URL of the supervisor's API, e.g. `http://127.0.0.1:8730`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer`, when the supervisor wants one. Never logged. */
  authToken?: string;
  /** Builds clone, build and push; allow them time. Default 30 min. */
  buildTimeoutMs?: number;
  /** The supervisor waits up to 420 s on a runner's deploy. Default 8 min. */
  deployTimeoutMs?: number;
  requestTimeoutMs?: number;
}

async function peerError(res: Response): Promise<{ message: string; body: Record<string, unknown> }> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const message = typeof body["error"] === "string" ? body["error"] : `HTTP ${res.status}`;
    return { message: redactUrl(message), body };
  } catch {
    return { message: `HTTP ${res.status}`, body: {} };
  }
}

/** A staged build failure as the executor records it: stage and fault in the message and detail. */
function buildFailure(status: number, body: Partial<BuildFailure>, message: string): TabbifyError {
  const stage = typeof body["stage"] === "string" ? body["stage"] : undefined;
  const detail: Record<string, unknown> = { status };
  if (stage !== undefined) detail["stage"] = stage;
  if (typeof body["user_fault"] === "boolean") detail["user_fault"] = body["user_fault"];
  return new TabbifyError("BUILD_FAILED", `build failed${stage ? ` at ${stage}` : ""}: ${message}`, detail);
}

function buildResultFrom(body: Partial<BuildAnswer> & { ref?: unknown }): BuildResult {
  // The reference supervisor spells the pushed reference `reff`; accept both spellings.
  const imageRef = body["image_ref"] ?? body["reff"] ?? body["ref"];
  const { digest, commit_sha } = body;
  if (typeof imageRef !== "string" || typeof digest !== "string" || typeof commit_sha !== "string") {
    throw new TabbifyError("BUILD_FAILED", "builder answered without image_ref, digest and commit_sha");
  }
  return { image_ref: imageRef, digest, commit_sha };
}

/**
 * Reads the builder's newline-delimited JSON: `log` lines go to onLog as they arrive, `stage`
 * lines are keep-alives, and the stream ends with a `result` or an `error` line.
 */
async function readBuildStream(res: Response, onLog: (line: string) => void): Promise<BuildResult> {
  if (!res.body) throw new TabbifyError("BUILD_FAILED", "builder answered an empty build stream");
  const decoder = new TextDecoder();
  let pending = "";
  const handle = (text: string): BuildResult | undefined => {
    if (text.trim() === "") return undefined;
    let msg: Partial<BuildStreamLine> & Record<string, unknown>;
    try {
      msg = JSON.parse(text) as Partial<BuildStreamLine> & Record<string, unknown>;
    } catch {
      throw new TabbifyError("BUILD_FAILED", "builder sent a build stream line that is not JSON");
    }
    if (msg["type"] === "log" && typeof msg["line"] === "string") onLog(redactUrl(msg["line"]));
    else if (msg["type"] === "result") return buildResultFrom(msg);
    else if (msg["type"] === "error") {
      const status = typeof msg["status"] === "number" ? msg["status"] : 500;
      const message = typeof msg["error"] === "string" ? redactUrl(msg["error"]) : `HTTP ${status}`;
      throw buildFailure(status, msg, message);
    }
    return undefined;
  };
  try {
    for await (const chunk of res.body) {
      pending += decoder.decode(chunk as Uint8Array, { stream: true });
      let newline = pending.indexOf("\n");
      while (newline >= 0) {
        const result = handle(pending.slice(0, newline));
        // Returning from the loop cancels the rest of the body.
        if (result) return result;
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
      }
    }
    const result = handle(pending + decoder.decode());
    if (result) return result;
  } catch (err) {
    if (err instanceof TabbifyError) throw err;
    const cause =
      err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new TabbifyError(
      "BUILD_FAILED",
      `the build stream from the supervisor broke off (${redactUrl(cause)})`,
    );
  }
  throw new TabbifyError("BUILD_FAILED", "the builder closed the build stream without a result");
}

/**
 * The deploy body, field by field: a deploy on a tenant's behalf names an image from the registry
 * and never carries a `command`, `artifact_dir` or anything else the supervisor would run as is,
 * whatever an upstream object happens to hold.
 */
export function deployWireBody(request: SupervisorDeployRequest): SupervisorDeployRequest {
  const body: SupervisorDeployRequest = {};
  for (const key of [
    "ref",
    "runtime",
    "artifact_version",
    "artifact_app",
    "environment",
    "probes",
  ] as const) {
    if (request[key] !== undefined) Object.assign(body, { [key]: request[key] });
  }
  if (request.digest !== undefined) body.digest = request.digest;
  if (request.env !== undefined) body.env = request.env;
  if (request.manifest_toml !== undefined) body.manifest_toml = request.manifest_toml;
  if (request.registry_token !== undefined) body.registry_token = request.registry_token;
  for (const key of ["limits", "lifecycle", "stateful", "data_mount"] as const) {
    if (request[key] !== undefined) Object.assign(body, { [key]: request[key] });
  }
  if (request.release !== undefined) body.release = request.release;
  return body;
}

export class HttpSupervisorClient implements SupervisorClient {
  readonly #api: SupervisorApi;
  readonly #opts: HttpSupervisorClientOptions;

  constructor(opts: HttpSupervisorClientOptions) {
    this.#api = new SupervisorApi({ baseUrl: opts.baseUrl, authToken: opts.authToken });
    this.#opts = opts;
  }

  /** The supervisor API's transport (SUPERVISOR_UNREACHABLE when no answer); statuses are read here. */
  #request(
    method: string,
    path: string,
    body: unknown,
    timeoutMs: number,
    accept = "application/json",
  ): Promise<Response> {
    return this.#api.send(method, path, { body, timeoutMs, accept });
  }

  /**
   * Asks for the streaming form (newline-delimited JSON: log lines as they come, then the result
   * or the staged failure) so build output reaches the deploy's events live and a long build is
   * not cut by an idle-response timeout; a supervisor that answers plain JSON works too.
   */
  async build(request: BuildRequest, onLog: (line: string) => void): Promise<BuildResult> {
    const res = await this.#request(
      "POST",
      "/v1/build",
      // The builder's route schema: a change there that this request no longer meets fails the typecheck.
      request satisfies BuildRequestBody,
      this.#opts.buildTimeoutMs ?? 30 * 60_000,
      "application/x-ndjson, application/json;q=0.9",
    );
    if (!res.ok) {
      const { message, body } = await peerError(res);
      const tail = body["log_tail"];
      const lines = Array.isArray(tail) ? tail : typeof tail === "string" ? tail.split("\n") : [];
      for (const line of lines) if (typeof line === "string" && line !== "") onLog(redactUrl(line));
      throw buildFailure(res.status, body, message);
    }
    if ((res.headers.get("content-type") ?? "").startsWith("application/x-ndjson")) {
      return readBuildStream(res, onLog);
    }
    const body = (await res.json()) as Partial<BuildAnswer>;
    const tail = body.log_tail;
    if (Array.isArray(tail)) for (const line of tail) if (typeof line === "string") onLog(redactUrl(line));
    return buildResultFrom(body);
  }

  async deploy(appUuid: string, request: SupervisorDeployRequest): Promise<SupervisorDeployReply> {
    const res = await this.#request(
      "POST",
      `/v1/apps/${encodeURIComponent(appUuid)}/deploy`,
      deployWireBody(request) satisfies DeployWire,
      this.#opts.deployTimeoutMs ?? 8 * 60_000,
    );
    if (!res.ok) {
      const { message } = await peerError(res);
      throw new TabbifyError("TARGET_DEPLOY_FAILED", `deploy answered ${res.status}: ${message}`, {
        status: res.status,
      });
    }
    const body = (await res.json()) as DeployAnswer & Partial<SupervisorDeployReply>;
    return {
      state: String(body.state ?? "unknown"),
      app_ula: String(body.app_ula ?? ""),
      bound_addr: body.bound_addr ?? null,
    };
  }

  async migrate(
    appUuid: string,
    request: SupervisorDeployRequest,
    command: string[],
  ): Promise<SupervisorMigrateReply> {
    const res = await this.#request(
      "POST",
      `/v1/apps/${encodeURIComponent(appUuid)}/migrate`,
      {
        ...deployWireBody(request),
        migrate: command,
      } satisfies Static<SupervisorSchemas["migrate"]["body"]>,
      // The supervisor kills the command after its own timeout (600 s) and answers.
      12 * 60_000,
    );
    if (!res.ok) {
      const { message } = await peerError(res);
      throw new TabbifyError("MIGRATION_FAILED", `migrate answered ${res.status}: ${message}`, {
        status: res.status,
      });
    }
    const body = (await res.json()) as MigrateAnswer;
    return {
      exit_code: typeof body.exit_code === "number" ? body.exit_code : null,
      signal: typeof body.signal === "string" ? body.signal : null,
      timed_out: body.timed_out === true,
      duration_ms: Number(body.duration_ms ?? 0),
      log_tail: Array.isArray(body.log_tail) ? body.log_tail.map(String) : [],
      ...(body.limit_reason === "oom" ? { limit_reason: "oom" as const } : {}),
    };
  }

  async app(appUuid: string): Promise<SupervisorAppStatus | null> {
    const res = await this.#request(
      "GET",
      `/v1/apps/${encodeURIComponent(appUuid)}`,
      undefined,
      this.#opts.requestTimeoutMs ?? 10_000,
    );
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) {
      const { message } = await peerError(res);
      throw new TabbifyError("TARGET_STATUS_FAILED", `app status answered ${res.status}: ${message}`);
    }
    const body = (await res.json()) as AppAnswer & Record<string, unknown>;
    const status: SupervisorAppStatus = {
      state: String(body["state"] ?? "unknown"),
      app_ula: String(body["app_ula"] ?? ""),
    };
    if (typeof body["image_ref"] === "string") status.image_ref = body["image_ref"];
    // The runner reports what it runs as `version`: for docker workloads the repository digest
    // `<repository>@sha256:…` (or the bare digest), of which the digest is what the registry stored.
    const digest = body["digest"] ?? body["version"];
    if (typeof digest === "string") status.digest = digest.slice(digest.lastIndexOf("@") + 1);
    if (typeof body["artifact_version"] === "string") status.artifact_version = body["artifact_version"];
    return status;
  }
}

/** Installation tokens from a GitHub App (`GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY`). */
export function githubAppTokenSource(
  apiUrl: string,
  appId: string | number,
  privateKeyPem: string,
): TokenSource {
  // Parse once at wiring time, so a bad key fails the node's start-up rather than every deploy.
  const key = loadAppPrivateKey(privateKeyPem);
  return {
    async installationToken(installationId) {
      return installationToken(apiUrl, await appJwt(appId, key), installationId);
    },
    async installationFor(repoUrl) {
      const { owner, repo } = repoCoordinates(repoUrl);
      return repoInstallation(apiUrl, await appJwt(appId, key), owner, repo);
    },
  };
}

/**
 * tabbify.toml through a GitHub-compatible contents API (GitHub, GitHub Enterprise, Forgejo's
 * `/api/v1`, which wants its access tokens as `Authorization: token <t>`).
 */
export function contentsApiManifestSource(apiUrl: string, scheme: AuthScheme = "Bearer"): ManifestSource {
  return {
    async fetchManifest(repoUrl, ref, token) {
      const { owner, repo } = repoCoordinates(repoUrl);
      const file = await fetchFile(apiUrl, token, owner, repo, TABBIFY_TOML, ref, scheme);
      return file === null ? null : file.toString("utf8");
    },
  };
}
