import type { Static } from "@sinclair/typebox";
import { TabbifyError } from "../core/errors.js";
import type { probeSchemas } from "../core/probes.js";
import { type StreamedBody, streamedInit } from "../core/streamed-body.js";
import type { HandoffByVersion, supervisorHandoffSchema } from "../upgrade/schemas.js";
import { type LogQuery, logQueryString } from "./logs-route.js";
import type { DeployBody, SupervisorError, supervisorSchemas } from "./schemas.js";

/**
 * The supervisor's API as its callers (the node, `tabbify down`, the pipeline's
 * HttpSupervisorClient) reach it: one method per route, request and answer typed by the route
 * schemas in schemas.ts. Answers are typed as a peer that may be older or newer sends them: every
 * field may be missing. Errors are TabbifyErrors with stable codes:
 *
 *   SUPERVISOR_UNREACHABLE  no answer (refused, reset, timed out); detail: { supervisor }
 *   SUPERVISOR_REFUSED      an answer other than 200; the message is the supervisor's own `error`
 *                           (or `HTTP <status>`); detail: { supervisor, status, code?, runner_log_tail? }
 */

type Schemas = typeof supervisorSchemas;
/** The 200 answer of a route, every field optional. */
export type SupervisorAnswer<Route extends keyof Schemas> = Partial<Static<Schemas[Route]["response"][200]>>;
export type SupervisorAppRow = SupervisorAnswer<"describe">;
/** The operations on an app the node forwards as they are (an empty body: the artifact store's version). */
export type SupervisorAppOp = "start" | "stop" | "restart" | "purge";
export type SupervisorOpAnswer = SupervisorAnswer<SupervisorAppOp>;

export interface SupervisorRefusal {
  supervisor: string;
  status: number;
  code?: string;
  runner_log_tail?: string;
}

export interface SupervisorApiOptions {
  /** Base URL of the supervisor's API, e.g. `http://127.0.0.1:8730`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer`, when the supervisor wants one. Never logged. */
  authToken?: string | undefined;
}

export interface CallOptions {
  timeoutMs?: number;
  /** Ends the call (and a streaming answer) when aborted. */
  signal?: AbortSignal;
}

export interface SendOptions extends CallOptions {
  body?: unknown;
  /** A body sent as it is read (a release tarball), instead of `body`. */
  stream?: StreamedBody;
  accept?: string;
}

export class SupervisorApi {
  readonly base: string;
  readonly #authToken: string | undefined;

  constructor(opts: SupervisorApiOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, "");
    this.#authToken = opts.authToken;
  }

  /**
   * One HTTP call: the answer whatever its status, or SUPERVISOR_UNREACHABLE. The typed methods
   * below are built on it; a caller that reads a route's answer its own way (a build stream) uses
   * it directly with a body checked against the route's schema.
   */
  async send(method: string, path: string, opts: SendOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: opts.accept ?? "application/json" };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    if (this.#authToken) headers["authorization"] = `Bearer ${this.#authToken}`;
    const signals = [AbortSignal.timeout(opts.timeoutMs ?? 10_000)];
    if (opts.signal) signals.push(opts.signal);
    let init: RequestInit & { duplex?: "half" } = {
      method,
      headers,
      signal: opts.timeoutMs === undefined && opts.signal ? opts.signal : AbortSignal.any(signals),
    };
    if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
    else if (opts.stream) init = { ...init, ...streamedInit(opts.stream, headers) };
    try {
      return await fetch(`${this.base}${path}`, init);
    } catch (err) {
      const cause =
        err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new TabbifyError("SUPERVISOR_UNREACHABLE", `supervisor at ${this.base} unreachable (${cause})`, {
        supervisor: this.base,
      });
    }
  }

  /** GET /api/version (unauthenticated): the release this supervisor runs. */
  async version(
    opts: CallOptions = {},
  ): Promise<Partial<Static<(typeof probeSchemas)["version"]["response"][200]>>> {
    const res = await this.send("GET", "/api/version", opts);
    if (res.status !== 200) throw await this.#refusal(res);
    return (await res.json()) as Partial<Static<(typeof probeSchemas)["version"]["response"][200]>>;
  }

  /**
   * POST /v1/platform/handoff: replace this supervisor with another release of itself, one it
   * kept (`{version}`) or the tarball, streamed. Answers once the new process is ready.
   */
  async handoff(
    release: Static<typeof HandoffByVersion> | { tarball: StreamedBody },
    opts: CallOptions = {},
  ): Promise<Partial<Static<(typeof supervisorHandoffSchema)["response"][200]>>> {
    const res = await this.send(
      "POST",
      "/v1/platform/handoff",
      "tarball" in release ? { ...opts, stream: release.tarball } : { ...opts, body: release },
    );
    if (res.status !== 200) throw await this.#refusal(res);
    return (await res.json()) as Partial<Static<(typeof supervisorHandoffSchema)["response"][200]>>;
  }

  /** GET /v1/apps: every app with a runner record on this host. */
  async list(opts: CallOptions = {}): Promise<SupervisorAnswer<"list">> {
    return this.#json<"list">("GET", "/v1/apps", opts);
  }

  /** GET /v1/apps/:uuid: the app's runner state, or what the artifact store would start. */
  async describe(uuid: string, opts: CallOptions = {}): Promise<SupervisorAppRow> {
    return this.#json<"describe">("GET", `/v1/apps/${encodeURIComponent(uuid)}`, opts);
  }

  /** POST /v1/apps/:uuid/{start,stop,restart,purge} with an empty body. */
  async appOp(uuid: string, op: SupervisorAppOp, opts: CallOptions = {}): Promise<SupervisorOpAnswer> {
    // An empty start body: the artifact store's version (the start route's body schema allows it).
    const body = {} satisfies Static<Schemas["start"]["body"]>;
    return this.#json<SupervisorAppOp>("POST", `/v1/apps/${encodeURIComponent(uuid)}/${op}`, {
      ...opts,
      body,
    });
  }

  /** POST /v1/apps/:uuid/deploy: run a new version, swapped in once healthy. */
  async deploy(
    uuid: string,
    body: Static<typeof DeployBody>,
    opts: CallOptions = {},
  ): Promise<SupervisorAnswer<"deploy">> {
    return this.#json<"deploy">("POST", `/v1/apps/${encodeURIComponent(uuid)}/deploy`, { ...opts, body });
  }

  /** POST /v1/runners/restart: hand every app to a new runner of the supervisor's release. */
  async restartRunners(opts: CallOptions = {}): Promise<SupervisorAnswer<"restartRunners">> {
    return this.#json<"restartRunners">("POST", "/v1/runners/restart", opts);
  }

  /**
   * GET /v1/apps/:uuid/logs: the runner log as a stream of text, ended by `signal` when it
   * follows. Never read whole: the caller copies it on as it arrives.
   */
  async logs(
    uuid: string,
    query: Pick<LogQuery, "follow"> & Partial<LogQuery>,
    opts: CallOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const q = logQueryString(query);
    const res = await this.send("GET", `/v1/apps/${encodeURIComponent(uuid)}/logs?${q}`, {
      ...opts,
      accept: "text/plain",
    });
    if (res.status !== 200 || !res.body) throw await this.#refusal(res);
    return res.body;
  }

  async #json<Route extends keyof Schemas>(
    method: string,
    path: string,
    opts: SendOptions,
  ): Promise<SupervisorAnswer<Route>> {
    const res = await this.send(method, path, opts);
    if (res.status !== 200) throw await this.#refusal(res);
    try {
      return (await res.json()) as SupervisorAnswer<Route>;
    } catch {
      throw new TabbifyError(
        "SUPERVISOR_REFUSED",
        `supervisor at ${this.base} answered ${path} with no JSON`,
        {
          supervisor: this.base,
          status: res.status,
        } satisfies SupervisorRefusal,
      );
    }
  }

  /** The supervisor's own `{ error, code }` (its error schema) as SUPERVISOR_REFUSED. */
  async #refusal(res: Response): Promise<TabbifyError> {
    const text = await res.text().catch(() => "");
    let body: Partial<Static<typeof SupervisorError>> & Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null) body = parsed as typeof body;
    } catch {
      // Not JSON: the status says it.
    }
    const detail: SupervisorRefusal = { supervisor: this.base, status: res.status };
    if (typeof body.code === "string") detail.code = body.code;
    if (typeof body["runner_log_tail"] === "string") detail.runner_log_tail = body["runner_log_tail"];
    const message = typeof body.error === "string" ? body.error : `HTTP ${res.status}`;
    return new TabbifyError("SUPERVISOR_REFUSED", message, detail);
  }
}

/** The refusal's detail when `err` is SUPERVISOR_REFUSED, else undefined. */
export function supervisorRefusal(err: unknown): SupervisorRefusal | undefined {
  return err instanceof TabbifyError && err.code === "SUPERVISOR_REFUSED"
    ? (err.detail as SupervisorRefusal)
    : undefined;
}
