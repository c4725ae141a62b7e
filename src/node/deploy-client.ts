import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { ProofRow } from "../contract/ledger.js";
import type { Contract } from "../contract/types.js";
import { TabbifyError } from "../core/errors.js";

/**
 * The typed client of the node's handler-deploy routes (deploy-session-routes.ts,
 * deploy-review-routes.ts). Caller routes send the user's token; session routes send the
 * session's own credential. Neither appears in an error.
 */

type RequestBody = NonNullable<RequestInit["body"]>;

export interface SessionAccepted {
  status: "accepted";
  sessionId: string;
  projectName: string;
  region: string;
  appUuid: string;
  appUrl: string;
  baselineSha: string | null;
  proposedSha: string;
  grantIds: string[];
  credential: { token: string; scope: string; expiresAt: string };
}

export interface PlanRequired {
  status: "plan_required";
  planId: string;
  reviewUrl: string;
  baselineSha: string | null;
  proposedSha: string;
  diff: { reasons: string[] };
  grantCoverage: { coveredReasons: string[]; uncoveredReasons: string[] };
}

export interface SessionStatus {
  sessionId: string;
  appUuid: string;
  appUrl: string;
  state: "open" | "uploaded" | "starting" | "ready" | "failed";
  detail: string | null;
  digest: string | null;
  contractSha: string;
}

export interface SessionRequest {
  projectName: string;
  region: string;
  contract: Contract;
  contractSha256: string;
  planId?: string;
}

export class DeployClient {
  constructor(
    readonly url: string,
    private readonly token: string | undefined,
    private readonly timeoutMs = 30_000,
  ) {}

  async #call<T>(
    method: string,
    path: string,
    opts: { body?: unknown; bearer?: string; raw?: RequestBody; size?: number } = {},
  ): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = {};
    const bearer = opts.bearer ?? this.token;
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    let body: RequestBody | undefined;
    if (opts.raw !== undefined) {
      headers["content-type"] = "application/octet-stream";
      if (opts.size !== undefined) headers["content-length"] = String(opts.size);
      body = opts.raw;
    } else if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        ...(opts.raw !== undefined ? { duplex: "half" } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      } as RequestInit);
    } catch (err) {
      const why =
        err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new TabbifyError("NODE_UNREACHABLE", `cannot reach the node at ${this.url} (${why})`);
    }
    const text = await res.text();
    let parsed: unknown = {};
    try {
      parsed = text === "" ? {} : JSON.parse(text);
    } catch {
      parsed = {};
    }
    if (res.status >= 400) {
      const e = parsed as { error?: unknown; code?: unknown };
      throw new TabbifyError(
        typeof e.code === "string" ? e.code : `HTTP_${res.status}`,
        typeof e.error === "string" ? e.error : `the node answered HTTP ${res.status}`,
        { status: res.status },
      );
    }
    return { status: res.status, body: parsed as T };
  }

  async openSession(req: SessionRequest): Promise<SessionAccepted | PlanRequired> {
    return (await this.#call<SessionAccepted | PlanRequired>("POST", "/v1/deploy/session", { body: req }))
      .body;
  }

  async uploadBundle(session: SessionAccepted, file: string): Promise<{ digest: string }> {
    const size = (await stat(file)).size;
    const stream = createReadStream(file) as unknown as RequestBody;
    const path = `/v1/deploy/sessions/${session.sessionId}/bundle`;
    return (
      await this.#call<{ digest: string }>("PUT", path, {
        raw: stream,
        size,
        bearer: session.credential.token,
      })
    ).body;
  }

  async release(session: SessionAccepted, env: Record<string, string>): Promise<void> {
    const path = `/v1/deploy/sessions/${session.sessionId}/release`;
    await this.#call("POST", path, { body: { env }, bearer: session.credential.token });
  }

  async status(session: SessionAccepted): Promise<SessionStatus> {
    const path = `/v1/deploy/sessions/${session.sessionId}`;
    return (await this.#call<SessionStatus>("GET", path, { bearer: session.credential.token })).body;
  }

  async sendProof(session: SessionAccepted, row: ProofRow): Promise<void> {
    const path = `/v1/deploy/sessions/${session.sessionId}/proof`;
    await this.#call("POST", path, { body: { row }, bearer: session.credential.token });
  }
}
