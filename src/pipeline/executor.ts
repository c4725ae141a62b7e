import { v7 as uuidV7 } from "uuid";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import type { PipelineDeps } from "./deps.js";
import { redactUrl } from "./github.js";
import { type DeployPlan, type DeployRequest, planDeploy, type StepName, type TargetResult } from "./plan.js";
import { type DeployState, errorMessage, type StepContext, type StepOutcome } from "./steps/context.js";
import { steps } from "./steps/index.js";
import { acquireToken } from "./steps/mint-token.js";
import { parseTabbifyToml, TABBIFY_TOML } from "./tabbify-toml.js";

export type {
  BuildRequest,
  BuildResult,
  ManifestSource,
  PipelineDeps,
  RegistryAccess,
  SupervisorAppStatus,
  SupervisorClient,
  SupervisorDeployReply,
  SupervisorDeployRequest,
  SupervisorMigrateReply,
  TokenSource,
} from "./deps.js";

/**
 * Runs a deploy plan step by step and records everything as events: each step's start, end or
 * failure, and the log lines steps produce (build output included). The record and its events
 * are what `GET /v1/deploy/<id>/status` and `/events` serve.
 *
 * Each step lives in its own file under steps/; what they talk to (supervisor, registry, roster,
 * forge) is declared in deps.ts, so the node wires real HTTP clients (see clients.ts) and tests
 * wire stand-ins.
 */

// ---------------------------------------------------------------------------------------------
// Events and records

export type DeployEventType =
  | "step_started"
  | "step_finished"
  | "step_failed"
  | "log"
  | "deploy_finished"
  | "deploy_failed";

export interface DeployEvent {
  /** 1, 2, 3… per deploy; SSE clients resume with the last one they saw. */
  seq: number;
  /** ISO 8601. */
  ts: string;
  deploy_id: string;
  /** The step the event belongs to; "deploy" for the closing event. */
  step: StepName | "deploy";
  type: DeployEventType;
  message?: string;
  data?: Record<string, unknown>;
}

/** `queued`: waiting for another rollout of the same app and environment to end. */
export type DeployStatus = "queued" | "running" | "succeeded" | "failed";

/** Whether a deploy has yet to end. */
export const isActive = (status: DeployStatus): boolean => status === "running" || status === "queued";

export interface DeployRecord {
  id: string;
  status: DeployStatus;
  request: DeployRequest;
  created_at: string;
  finished_at?: string;
  app_uuid?: string;
  image_ref?: string;
  digest?: string;
  /** One item per target once fan-out ran; empty when a fatal error came first. */
  results: TargetResult[];
  /** Set when the deploy failed as a whole. */
  error?: { code: string; message: string; step: StepName | "deploy" };
  events: DeployEvent[];
}

export type DeployRecordPatch = Partial<
  Pick<DeployRecord, "status" | "finished_at" | "app_uuid" | "image_ref" | "digest" | "results" | "error">
>;

export type EventListener = (event: DeployEvent) => void;

/**
 * Where deploy records live. The node persists them; {@link MemoryDeployStore} keeps them in
 * memory. `subscribe` delivers every event with seq > `afterSeq` and then live ones, with no gap
 * and no repeat between the two, and returns the function that stops delivery. `append` with a
 * patch records the event and the patch as one write: a deploy's final status and its closing
 * event are never found apart.
 */
export interface DeployStore {
  create(record: DeployRecord): Promise<void>;
  append(event: DeployEvent, patch?: DeployRecordPatch): Promise<void>;
  update(id: string, patch: DeployRecordPatch): Promise<void>;
  get(id: string): Promise<DeployRecord | undefined>;
  subscribe(id: string, afterSeq: number, listener: EventListener): Promise<() => void>;
}

export const isTerminalEvent = (e: DeployEvent) => e.type === "deploy_finished" || e.type === "deploy_failed";

/**
 * Live listeners per deploy, shared by every DeployStore. `replayThenListen` sends the events
 * after `afterSeq` and registers the listener in one synchronous stretch, so no event that is
 * published meanwhile can fall between replay and registration.
 */
export class DeployEventFanout {
  readonly #listeners = new Map<string, Set<EventListener>>();

  publish(event: DeployEvent): void {
    for (const listener of this.#listeners.get(event.deploy_id) ?? []) listener(event);
  }

  replayThenListen(record: DeployRecord, afterSeq: number, listener: EventListener): () => void {
    for (const event of record.events) if (event.seq > afterSeq) listener(event);
    let listeners = this.#listeners.get(record.id);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(record.id, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) this.#listeners.delete(record.id);
    };
  }
}

/** Deploy records in memory, the newest `capacity` kept (finished ones are evicted first-in). */
export class MemoryDeployStore implements DeployStore {
  readonly #records = new Map<string, DeployRecord>();
  readonly #fanout = new DeployEventFanout();
  readonly #capacity: number;

  constructor(capacity = 1000) {
    this.#capacity = capacity;
  }

  async create(record: DeployRecord): Promise<void> {
    if (this.#records.has(record.id)) throw new Error(`deploy ${record.id} already exists`);
    this.#records.set(record.id, structuredClone(record));
    for (const [id, r] of this.#records) {
      if (this.#records.size <= this.#capacity) break;
      if (!isActive(r.status)) this.#records.delete(id);
    }
  }

  async append(event: DeployEvent, patch?: DeployRecordPatch): Promise<void> {
    const record = this.#records.get(event.deploy_id);
    if (!record) throw new Error(`deploy ${event.deploy_id} unknown`);
    if (patch) Object.assign(record, structuredClone(patch));
    record.events.push(event);
    this.#fanout.publish(event);
  }

  async update(id: string, patch: DeployRecordPatch): Promise<void> {
    const record = this.#records.get(id);
    if (!record) throw new Error(`deploy ${id} unknown`);
    Object.assign(record, structuredClone(patch));
  }

  async get(id: string): Promise<DeployRecord | undefined> {
    const record = this.#records.get(id);
    return record ? structuredClone(record) : undefined;
  }

  async subscribe(id: string, afterSeq: number, listener: EventListener): Promise<() => void> {
    const record = this.#records.get(id);
    if (!record) throw new TabbifyError("DEPLOY_NOT_FOUND", `deploy ${id} is unknown`);
    return this.#fanout.replayThenListen(record, afterSeq, listener);
  }
}

/**
 * The events of one deploy as an async iterable: those after `afterSeq`, then live ones, ending
 * after the closing event (or when `signal` aborts). What an SSE handler loops over.
 */
export async function* followDeploy(
  store: DeployStore,
  id: string,
  afterSeq = 0,
  signal?: AbortSignal,
): AsyncGenerator<DeployEvent> {
  const queue: DeployEvent[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = await store.subscribe(id, afterSeq, (event) => {
    queue.push(event);
    wake?.();
  });
  const onAbort = () => wake?.();
  signal?.addEventListener("abort", onAbort);
  try {
    while (!signal?.aborted) {
      const event = queue.shift();
      if (event) {
        yield event;
        if (isTerminalEvent(event)) return;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    unsubscribe();
  }
}

// ---------------------------------------------------------------------------------------------
// The executor

export class DeployExecutor {
  readonly #deps: PipelineDeps;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #newId: () => string;
  readonly #maxLogEvents: number;
  /** Every secret a running deploy has seen; scrubbed from messages before they are recorded. */
  readonly #secrets = new Map<string, Set<string>>();
  readonly #seq = new Map<string, number>();

  constructor(deps: PipelineDeps) {
    this.#deps = deps;
    this.#logger = deps.logger ?? silentLogger;
    this.#now = deps.now ?? (() => new Date());
    this.#newId = deps.newId ?? (() => uuidV7());
    this.#maxLogEvents = deps.maxLogEvents ?? 5000;
  }

  /**
   * Records a new deploy and runs it in the background; resolves with its id once the record
   * exists (what the node answers 202 with). The returned `done` settles when the deploy ends.
   */
  async start(request: DeployRequest): Promise<{ id: string; done: Promise<DeployRecord> }> {
    const plan = planDeploy(this.#newId(), request);
    await this.#deps.store.create({
      id: plan.id,
      status: "running",
      request: redactRequest(request),
      created_at: this.#now().toISOString(),
      results: [],
      events: [],
    });
    const done = this.#run(plan).catch(async (err: unknown) => {
      // Only a bug or a failing store gets here (steps' own failures are recorded in #run). Try
      // to close the record so nobody polls a deploy that will never finish.
      this.#logger.error("deploy crashed", {
        deploy_id: plan.id,
        error: this.#scrub(plan.id, errorMessage(err)),
      });
      const error = {
        code: "INTERNAL",
        message: "the deploy stopped on an internal error",
        step: "deploy" as const,
      };
      await this.#deps.store
        .update(plan.id, { status: "failed", finished_at: this.#now().toISOString(), error })
        .catch(() => {});
      const record = await this.#deps.store.get(plan.id);
      if (!record) throw err;
      return record;
    });
    return { id: plan.id, done };
  }

  /** Runs a deploy to its end and returns the final record. */
  async run(request: DeployRequest): Promise<DeployRecord> {
    const { done } = await this.start(request);
    return done;
  }

  async #run(plan: DeployPlan): Promise<DeployRecord> {
    const state: DeployState = { plan, results: [], logEvents: 0, logDropped: 0 };
    const context = this.#context(state);
    this.#secrets.set(plan.id, new Set());
    try {
      for (const step of plan.steps) {
        await this.#emit(plan.id, step, "step_started");
        const started = performance.now();
        let outcome: StepOutcome;
        try {
          outcome = await steps[step](state, context);
        } catch (err) {
          const failure = describeFailure(err, step);
          await this.#flushDroppedLogs(state, step);
          await this.#emit(plan.id, step, "step_failed", failure.message, {
            code: failure.code,
            duration_ms: Math.round(performance.now() - started),
          });
          const error = { code: failure.code, message: this.#scrub(plan.id, failure.message), step };
          const closing = {
            status: "failed" as const,
            finished_at: this.#now().toISOString(),
            results: state.results,
            error,
          };
          await this.#emit(
            plan.id,
            "deploy",
            "deploy_failed",
            error.message,
            { code: error.code, step },
            closing,
          );
          return (await this.#deps.store.get(plan.id))!;
        }
        await this.#flushDroppedLogs(state, step);
        await this.#emit(plan.id, step, "step_finished", outcome?.message, {
          ...outcome?.data,
          duration_ms: Math.round(performance.now() - started),
        });
      }
      const failed = state.results.filter((r) => !r.success).length;
      await this.#emit(
        plan.id,
        "deploy",
        "deploy_finished",
        `${state.results.length - failed} of ${state.results.length} targets deployed`,
        { results: state.results },
        { status: "succeeded", finished_at: this.#now().toISOString(), results: state.results },
      );
      return (await this.#deps.store.get(plan.id))!;
    } finally {
      await state.releaseLock?.().catch((err: unknown) =>
        this.#logger.warn("deploy lock not released (it expires)", {
          deploy_id: plan.id,
          error: errorMessage(err),
        }),
      );
      this.#secrets.delete(plan.id);
      this.#seq.delete(plan.id);
    }
  }

  /**
   * The branch the repository's tabbify.toml at the request's commit deploys from (`[app].branch`),
   * undefined when it names none. Throws when the file is missing, unreadable or invalid: the
   * caller decides what that means for the push.
   */
  async manifestBranch(request: DeployRequest): Promise<string | undefined> {
    const { token } = await acquireToken(this.#deps, request);
    const ref = request.sha ?? request.ref;
    const source = await this.#deps.manifests.fetchManifest(request.repoUrl, ref, token);
    if (source === null) {
      throw new TabbifyError("TABBIFY_TOML_MISSING", `${TABBIFY_TOML}: not found at ${ref}`);
    }
    return parseTabbifyToml(source).app.branch;
  }

  #scrub(deployId: string, text: string): string {
    let out = redactUrl(text);
    for (const secret of this.#secrets.get(deployId) ?? []) out = out.split(secret).join("[redacted]");
    return out;
  }

  #rememberSecret(deployId: string, secret: string): void {
    if (secret !== "") this.#secrets.get(deployId)?.add(secret);
  }

  async #emit(
    deployId: string,
    step: StepName | "deploy",
    type: DeployEventType,
    message?: string,
    data?: Record<string, unknown>,
    /** The record's closing patch, written with the event. */
    patch?: DeployRecordPatch,
  ): Promise<void> {
    const seq = (this.#seq.get(deployId) ?? 0) + 1;
    this.#seq.set(deployId, seq);
    const event: DeployEvent = { seq, ts: this.#now().toISOString(), deploy_id: deployId, step, type };
    if (message !== undefined) event.message = this.#scrub(deployId, message);
    if (data !== undefined) event.data = data;
    await this.#deps.store.append(event, patch);
  }

  /** Log lines are emitted in order but not awaited one by one by their producers: chain them. */
  #stepLog(state: DeployState, step: StepName): { log: (line: string) => void; flush: () => Promise<void> } {
    let chain = Promise.resolve();
    const log = (line: string) => {
      if (state.logEvents >= this.#maxLogEvents) {
        state.logDropped++;
        return;
      }
      state.logEvents++;
      chain = chain.then(() => this.#emit(state.plan.id, step, "log", line));
    };
    return { log, flush: () => chain };
  }

  async #flushDroppedLogs(state: DeployState, step: StepName): Promise<void> {
    if (state.logDropped === 0) return;
    await this.#emit(state.plan.id, step, "log", `… ${state.logDropped} more log lines not recorded`);
    state.logDropped = 0;
  }

  /** The executor's services bound to one running deploy, as its steps see them. */
  #context(state: DeployState): StepContext {
    const deployId = state.plan.id;
    return {
      deps: this.#deps,
      rememberSecret: (secret) => this.#rememberSecret(deployId, secret),
      scrub: (text) => this.#scrub(deployId, text),
      stepLog: (step) => this.#stepLog(state, step),
    };
  }
}

function describeFailure(err: unknown, step: StepName): { code: string; message: string } {
  if (isTabbifyError(err)) return { code: err.code, message: err.message };
  // Not one of ours: name the step, keep the message (scrubbed by the caller), mark it internal.
  return { code: "DEPLOY_STEP_ERROR", message: `${step}: ${errorMessage(err)}` };
}

/** The request as recorded: the repo URL without credentials. */
function redactRequest(request: DeployRequest): DeployRequest {
  return { ...request, repoUrl: redactUrl(request.repoUrl) };
}
