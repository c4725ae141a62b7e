import type { Static } from "@sinclair/typebox";
import { TabbifyError } from "../core/errors.js";
import { type StreamedBody, streamedInit } from "../core/streamed-body.js";
import type {
  App,
  AppOpResult,
  auditSchema,
  DeployProgressAnswer,
  RuntimeStatusAnswer,
} from "./schemas/apps.js";
import type { envSchemas } from "./schemas/operations.js";
import type { RosterApp } from "./schemas/roster.js";

/**
 * A typed HTTP client for the node's API, for `tcli` and any other caller outside the node.
 * Every call sends the bearer token given at construction; the token never appears in an error.
 * The node's `{error, code}` answers become TabbifyErrors with that code.
 */

/**
 * Request and answer types come from the route schemas (src/node/schemas/): a schema change that
 * breaks a caller of this client fails the typecheck.
 */

/** One entry of the app registry, as `GET /api/v1/apps` answers it. */
export type NodeApp = Static<typeof App>;

/** A runner on the node's roster (`GET /v1/apps`). */
export type NodeRunner = Static<typeof RosterApp>;

/** `GET /api/v1/apps/:app/runtime-status`. */
export type RuntimeStatus = Static<typeof RuntimeStatusAnswer>;

/** `GET /api/v1/apps/:app/progress`. */
export type DeployProgress = Static<typeof DeployProgressAnswer>;

/** What the node answers for stop, start and purge. */
export type AppOperation = Static<typeof AppOpResult>;

/** `GET /api/v1/audit`: one page of the chain (node key). */
export type AuditPage = Partial<Static<(typeof auditSchema)["response"][200]>>;

/** `GET /v1/supervisor/apps/:uuid/env` (the supervisors' key), as a peer of any age answers it. */
export type SupervisorEnvAnswer = Partial<Static<(typeof envSchemas)["forSupervisor"]["response"][200]>>;

export interface NodeClientOptions {
  url: string;
  token?: string;
  /** Per request. Default 15 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class NodeClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(opts: NodeClientOptions) {
    this.url = normalizeNodeUrl(opts.url);
    this.#token = opts.token;
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** Whether calls carry a token (a saved login or TABBIFY_TOKEN). */
  hasToken(): boolean {
    return this.#token !== undefined;
  }

  health(): Promise<{ status: string; version: string }> {
    return this.#json("GET", "/health");
  }

  async apps(): Promise<NodeApp[]> {
    return (await this.#json<{ apps: NodeApp[] }>("GET", "/api/v1/apps")).apps;
  }

  app(ref: string): Promise<NodeApp> {
    return this.#json("GET", `/api/v1/apps/${encodeURIComponent(ref)}`);
  }

  /** The roster's runners; the node key only. */
  async runners(): Promise<NodeRunner[]> {
    return (await this.#json<{ apps: NodeRunner[] }>("GET", "/v1/apps")).apps;
  }

  runtimeStatus(ref: string): Promise<RuntimeStatus> {
    return this.#json("GET", `/api/v1/apps/${encodeURIComponent(ref)}/runtime-status`);
  }

  progress(ref: string): Promise<DeployProgress> {
    return this.#json("GET", `/api/v1/apps/${encodeURIComponent(ref)}/progress`);
  }

  /** `POST /api/v1/apps/:app/stop|start|purge`: forwarded to every target, per-target answers. */
  /** `env`: one of the app's environments (default: the app's own uuid, its first environment). */
  operate(ref: string, op: "stop" | "start" | "purge" | "restart", env?: string): Promise<AppOperation> {
    const query = env ? `?${new URLSearchParams({ env })}` : "";
    return this.#json("POST", `/api/v1/apps/${encodeURIComponent(ref)}/${op}${query}`, {});
  }

  /** One page of the audit chain after `after` (the node key only). */
  auditPage(after: number, limit: number): Promise<AuditPage> {
    return this.#json(
      "GET",
      `/api/v1/audit?${new URLSearchParams({ after: String(after), limit: String(limit) })}`,
    );
  }

  /** The env values a workload running as `uuid` gets; for a supervisor, with the supervisors' key. */
  supervisorEnv(uuid: string): Promise<SupervisorEnvAnswer> {
    return this.#json("GET", `/v1/supervisor/apps/${encodeURIComponent(uuid)}/env`);
  }

  /** Removes the app from the registry (its targets are untouched: purge first). */
  removeApp(ref: string): Promise<Record<string, unknown>> {
    return this.#json("DELETE", `/api/v1/apps/${encodeURIComponent(ref)}`);
  }

  /** The app's merged runtime log as a text stream (`<target> | <line>`); ends unless `follow`. */
  async logs(
    ref: string,
    opts: { tail?: number; follow: boolean; env?: string; since?: string; timestamps?: boolean },
  ): Promise<ReadableStream<Uint8Array>> {
    const query = new URLSearchParams({ follow: opts.follow ? "1" : "0" });
    if (opts.tail !== undefined) query.set("tail", String(opts.tail));
    if (opts.env) query.set("env", opts.env);
    if (opts.since !== undefined) query.set("since", opts.since);
    if (opts.timestamps) query.set("timestamps", "1");
    const res = await this.#send(
      "GET",
      `/api/v1/apps/${encodeURIComponent(ref)}/logs?${query}`,
      undefined,
      !opts.follow,
    );
    if (!res.ok || !res.body) await this.#fail(res, "GET", "/logs");
    return res.body as ReadableStream<Uint8Array>;
  }

  /**
   * Any JSON call on the node's API, for typed wrappers kept next to their routes or commands (see
   * releases-client.ts). `timeout: false` for calls that last as long as a rollout.
   */
  request<T>(method: string, path: string, body?: unknown, opts: { timeout?: boolean } = {}): Promise<T> {
    return this.#json(method, path, body, opts.timeout ?? true);
  }

  /**
   * A JSON call whose request body streams (`upload`): no timeout, since the body's size, not the
   * node, sets how long it takes; the answer is read as `request` reads it.
   */
  upload<T>(method: string, path: string, body: StreamedBody): Promise<T> {
    return this.#json(method, path, body, false);
  }

  /**
   * A POST whose answer is a text stream (the git hook's deploy progress), with no timeout: it
   * lasts as long as the deploy. `headers` carry a route's own credential instead of the token.
   */
  async postForText(
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#send("POST", path, body, false, headers);
    if (!res.ok || !res.body) await this.#fail(res, "POST", path);
    return res.body as ReadableStream<Uint8Array>;
  }

  /** A text route's body as a stream (deploy logs). */
  async text(path: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#send("GET", path, undefined, false);
    if (!res.ok || !res.body) await this.#fail(res, "GET", path);
    return res.body as ReadableStream<Uint8Array>;
  }

  /** The status and JSON body whatever the status, for protocols whose errors are answers (OAuth). */
  async exchange(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await this.#send(method, path, body);
    const text = await res.text();
    try {
      return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
    } catch {
      throw this.#notJson(method, path, res.status);
    }
  }

  async #send(
    method: string,
    path: string,
    body: unknown,
    timeout = true,
    extra: Record<string, string> = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json", ...extra };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    let init: RequestInit & { duplex?: "half" } = { method, headers };
    if (isStreamed(body)) {
      init = { ...init, ...streamedInit(body, headers) };
    } else if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (timeout) init.signal = AbortSignal.timeout(this.#timeoutMs);
    try {
      return await this.#fetch(`${this.url}${path}`, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string } })?.cause?.code ?? (err as Error).message;
      throw new TabbifyError("NODE_UNREACHABLE", `cannot reach the node at ${this.url} (${cause})`);
    }
  }

  #notJson(method: string, path: string, status: number): TabbifyError {
    return new TabbifyError(
      "NODE_BAD_ANSWER",
      `${method} ${path} answered HTTP ${status} with a body that is not JSON: is ${this.url} a Tabbify node?`,
    );
  }

  async #fail(res: Response, method: string, path: string): Promise<never> {
    const text = await res.text();
    let parsed: { error?: unknown; code?: unknown } = {};
    try {
      parsed = text === "" ? {} : JSON.parse(text);
    } catch {
      throw this.#notJson(method, path, res.status);
    }
    const code = typeof parsed.code === "string" ? parsed.code : `HTTP_${res.status}`;
    const message = typeof parsed.error === "string" ? parsed.error : `HTTP ${res.status}`;
    throw new TabbifyError(code, message, { status: res.status });
  }

  async #json<T>(method: string, path: string, body?: unknown, timeout = true): Promise<T> {
    const res = await this.#send(method, path, body, timeout);
    if (!res.ok) return this.#fail(res, method, path);
    const text = await res.text();
    try {
      return (text === "" ? {} : JSON.parse(text)) as T;
    } catch {
      throw this.#notJson(method, path, res.status);
    }
  }
}

function isStreamed(body: unknown): body is StreamedBody {
  return typeof body === "object" && body !== null && (body as StreamedBody).stream instanceof ReadableStream;
}

/** `http://host:port` without a trailing slash; anything but an http(s) URL is refused. */
export function normalizeNodeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TabbifyError(
      "USAGE",
      `--node must be a URL like http://127.0.0.1:8090, not "${raw.slice(0, 80)}"`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TabbifyError("USAGE", `--node must be an http(s) URL, not ${url.protocol}`);
  }
  if (url.username || url.password) {
    throw new TabbifyError("USAGE", "--node must not carry credentials: use `tcli login`");
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
