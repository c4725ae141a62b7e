import type { Static } from "@sinclair/typebox";
import type { Logger } from "../core/log.js";
import { silentLogger } from "../core/log.js";
import type { MeshRequests, RosterRegisterReply } from "../node/schemas/mesh.js";
import { refusalMessage } from "./mesh-client.js";
import type { PeerRecord } from "./roster.js";

/** The node's answer, typed by its route schema (src/node/schemas/mesh.ts). */
type RegisterReply = Static<typeof RosterRegisterReply>;

export interface RosterClientOptions {
  /** Base URL of the node hosting the coordinator, e.g. `http://127.0.0.1:8090`. */
  nodeUrl: string;
  /** `TABBIFY_NODE_KEY`; sent as a bearer token, never logged. */
  nodeKey?: string;
  logger?: Logger;
  /** Heartbeat period; default 5 s, well inside the coordinator's 60 s timeout. */
  intervalMs?: number;
  /** Per-request timeout; default 5 s. */
  requestTimeoutMs?: number;
}

type BeatOutcome =
  | { ok: true; reply: RegisterReply }
  | { ok: false; status: number; message: string }
  | { ok: false; status: 0; message: string };

/**
 * Keeps one peer on the node's roster: registers, then heartbeats the full record every interval.
 * A 404 heartbeat means the coordinator forgot us (it restarted), so we register again. An
 * unreachable or failing node is logged once per outage and retried on the next beat; the peer
 * itself keeps working, because the roster is advisory for routing, not a lifeline.
 */
export class RosterClient {
  private readonly nodeUrl: string;
  private readonly nodeKey: string | undefined;
  private readonly logger: Logger;
  private intervalMs: number;
  private readonly requestTimeoutMs: number;
  private record: (() => PeerRecord) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  private registered = false;
  private failing = false;
  private currentPeerId: string | undefined;
  /** Set by `intervalMs`; else we beat at the interval the coordinator's replies ask for. */
  private readonly intervalFixed: boolean;

  constructor(opts: RosterClientOptions) {
    this.nodeUrl = opts.nodeUrl.replace(/\/+$/, "");
    this.nodeKey = opts.nodeKey;
    this.logger = opts.logger ?? silentLogger;
    this.intervalMs = opts.intervalMs ?? 5000;
    this.intervalFixed = opts.intervalMs !== undefined;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
  }

  /** The id the coordinator gave us, once registered. */
  get peerId(): string | undefined {
    return this.currentPeerId;
  }

  /** The id while we are on the roster: registered, and the last beat got through. */
  get joinedPeerId(): string | undefined {
    return this.registered && !this.failing ? this.currentPeerId : undefined;
  }

  /** Starts registering and heartbeating; `record` is read fresh on every beat. */
  start(record: () => PeerRecord): void {
    if (this.record) throw new Error("RosterClient.start called twice");
    this.record = record;
    this.stopped = false;
    this.schedule(0);
  }

  /**
   * Stops beating and deregisters, best-effort: a node that is down forgets us by timeout. A
   * process handing over to its successor, which registered under the same name, only stops.
   */
  async stop(opts: { deregister?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
    const peerId = this.currentPeerId;
    if (!this.registered || !peerId || opts.deregister === false) return;
    this.registered = false;
    try {
      await this.post("/v1/mesh/deregister", { peer_id: peerId });
    } catch {
      // Best-effort by design: the coordinator drops silent peers after its heartbeat timeout.
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.inFlight = this.beat().finally(() => {
        this.inFlight = undefined;
        this.schedule(this.intervalMs);
      });
    }, delayMs);
    // The peer's own server keeps the process alive; the roster loop alone must not.
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    const record = this.record?.();
    if (!record) return;
    let outcome = await this.send(this.registered ? "/v1/mesh/heartbeat" : "/v1/mesh/register", record);
    if (!outcome.ok && outcome.status === 404 && this.registered) {
      this.logger.info("coordinator forgot this peer; registering again", {
        kind: record.kind,
        name: record.name,
      });
      this.registered = false;
      outcome = await this.send("/v1/mesh/register", record);
    }
    if (this.stopped) return;
    if (outcome.ok) {
      if (!this.registered) {
        this.logger.info("registered with the node", {
          node: this.nodeUrl,
          kind: record.kind,
          name: record.name,
          peer_id: outcome.reply.peer_id,
        });
      }
      this.registered = true;
      this.currentPeerId = outcome.reply.peer_id;
      const asked = outcome.reply.heartbeat_interval_secs;
      if (!this.intervalFixed && Number.isFinite(asked) && asked > 0) this.intervalMs = asked * 1000;
      if (this.failing) this.logger.info("node reachable again", { node: this.nodeUrl });
      this.failing = false;
      return;
    }
    if (!this.failing) {
      const fields = { node: this.nodeUrl, status: outcome.status, reason: outcome.message };
      if (outcome.status === 401) {
        this.logger.error("node rejected the node key (check TABBIFY_NODE_KEY); retrying", fields);
      } else {
        this.logger.warn("node unreachable for roster heartbeats; retrying every interval", fields);
      }
    }
    this.failing = true;
  }

  private async send(
    path: "/v1/mesh/register" | "/v1/mesh/heartbeat",
    record: PeerRecord,
  ): Promise<BeatOutcome> {
    try {
      const res = await this.post(path, record);
      const text = await res.text();
      if (res.ok) return { ok: true, reply: JSON.parse(text) as RegisterReply };
      return { ok: false, status: res.status, message: refusalMessage(text) };
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      return { ok: false, status: 0, message: cause?.code ?? (err as Error).message };
    }
  }

  private post<P extends keyof MeshRequests>(path: P, body: MeshRequests[P]): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.nodeKey) headers.authorization = `Bearer ${this.nodeKey}`;
    return fetch(`${this.nodeUrl}${path}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.requestTimeoutMs),
    });
  }
}
