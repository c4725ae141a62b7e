import { v7 as uuidV7 } from "uuid";
import { deriveAppUla } from "../core/address.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import { redactUrl } from "./github.js";
import {
  checkCapabilities,
  type DeployPlan,
  type DeployRequest,
  type DeployTarget,
  imageRef,
  pickBuilder,
  planDeploy,
  type RosterSupervisor,
  type RosterView,
  resolveAppUuid,
  resolveTargets,
  type StepName,
  type TargetResult,
} from "./plan.js";
import { parseTabbifyToml, TABBIFY_TOML, type TabbifyManifest } from "./tabbify-toml.js";

/**
 * Runs a deploy plan step by step and records everything as events: each step's start, end or
 * failure, and the log lines steps produce (build output included). The record and its events
 * are what `GET /v1/deploy/<id>/status` and `/events` serve.
 *
 * The supervisor, registry, roster and GitHub are reached through the interfaces below, so the
 * node wires real HTTP clients (see clients.ts) and tests wire stand-ins.
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

export type DeployStatus = "running" | "succeeded" | "failed";

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
      if (r.status !== "running") this.#records.delete(id);
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
// What the steps talk to

/** GitHub App (or another forge's) installation tokens; absent when no App is configured. */
export interface TokenSource {
  installationToken(installationId: number): Promise<{ token: string; expires_at: string }>;
  /**
   * The installation covering a repository, for deploys that name none (`POST /v1/deploy`);
   * undefined when the App is not installed there.
   */
  installationFor?(repoUrl: string): Promise<number | undefined>;
}

/** Reads tabbify.toml of a repository at a ref; null when the file does not exist. */
export interface ManifestSource {
  fetchManifest(repoUrl: string, ref: string, token: string | undefined): Promise<string | null>;
}

/** Our registry as the pipeline needs it: where images go, and tokens scoped to one repository. */
export interface RegistryAccess {
  /** `host[:port]` the builder pushes to and targets pull from. */
  host: string;
  /** A token allowed to push (and pull) `<tenant>/<appUuid>`. */
  pushToken(tenant: string, appUuid: string): Promise<string>;
  /** A token allowed to pull `<tenant>/<appUuid>`; absent when targets pull anonymously. */
  pullToken?(tenant: string, appUuid: string): Promise<string>;
}

/** `POST /v1/build` on a builder supervisor. */
export interface BuildRequest {
  repo_url: string;
  ref: string;
  tenant: string;
  app_uuid: string;
  /** Registry `host[:port]`. */
  registry: string;
  /** Where the image goes, without tag: `<registry>/<tenant lowercased>/<app_uuid>`; the tag is the commit sha. */
  image_repository: string;
  clone_token?: string;
  push_token?: string;
  build_kind: "docker";
  context: string;
  dockerfile: string;
  stable_tag?: string;
  manifest_toml?: string;
}

export interface BuildResult {
  /** `<registry>/<tenant>/<uuid>:<commit sha>` as pushed. */
  image_ref: string;
  /** Manifest digest the registry stored, `sha256:…`. */
  digest: string;
  /** The commit actually built (HEAD after checkout), 40 hex. */
  commit_sha: string;
}

/** `POST /v1/apps/<uuid>/deploy` on a target supervisor. */
export interface SupervisorDeployRequest {
  ref: string;
  digest?: string;
  runtime: string;
  env?: Record<string, string>;
  manifest_toml?: string;
  registry_token?: string;
}

export interface SupervisorDeployReply {
  state: string;
  app_ula: string;
  bound_addr?: string | null;
}

/** `GET /v1/apps/<uuid>`: what the runner reports it runs. */
export interface SupervisorAppStatus {
  state: string;
  app_ula: string;
  image_ref?: string;
  /** Digest of the image the runner's workload runs. */
  digest?: string;
}

export interface SupervisorClient {
  /** Builds and pushes; `onLog` receives build output lines as they are known. Throws on failure. */
  build(request: BuildRequest, onLog: (line: string) => void): Promise<BuildResult>;
  deploy(appUuid: string, request: SupervisorDeployRequest): Promise<SupervisorDeployReply>;
  /** null when the supervisor has no such app. */
  app(appUuid: string): Promise<SupervisorAppStatus | null>;
}

export interface PipelineDeps {
  store: DeployStore;
  roster: RosterView;
  supervisorClient(supervisor: RosterSupervisor): SupervisorClient;
  manifests: ManifestSource;
  tokens?: TokenSource;
  /**
   * A standing access token for forges without App installations (Forgejo's `FORGEJO_TOKEN`):
   * used as is for the contents API and as the clone password. Wins over `tokens`.
   */
  accessToken?: string;
  registry?: RegistryAccess;
  /** Checks that `/app/<uuid>` answers through the node; throws with a reason when it does not. */
  probeApp?(appUuid: string): Promise<void>;
  logger?: Logger;
  newId?: () => string;
  now?: () => Date;
  /** Log events kept per deploy before the rest are summarised in one line. Default 5000. */
  maxLogEvents?: number;
}

// ---------------------------------------------------------------------------------------------
// The executor

interface DeployState {
  plan: DeployPlan;
  cloneToken?: string;
  manifestToml?: string;
  manifest?: TabbifyManifest;
  appUuid?: string;
  supervisors?: RosterSupervisor[];
  builder?: RosterSupervisor;
  targets?: DeployTarget[];
  imageRef?: string;
  digest?: string;
  results: TargetResult[];
  logEvents: number;
  logDropped: number;
}

type StepOutcome = { message?: string; data?: Record<string, unknown> } | undefined;

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
    this.#secrets.set(plan.id, new Set());
    try {
      for (const step of plan.steps) {
        await this.#emit(plan.id, step, "step_started");
        const started = performance.now();
        let outcome: StepOutcome;
        try {
          outcome = await this.#steps[step](state);
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
      this.#secrets.delete(plan.id);
      this.#seq.delete(plan.id);
    }
  }

  /**
   * The token a deploy reads and clones with: the forge's standing access token, else an
   * installation token for the push's installation or (for requests naming none) the one the App
   * has on the repository; none means anonymous, which works for public repositories.
   */
  async #acquireToken(
    request: DeployRequest,
  ): Promise<{ token?: string; message: string; data?: Record<string, unknown> }> {
    if (this.#deps.accessToken !== undefined && this.#deps.accessToken !== "") {
      return { token: this.#deps.accessToken, message: "using the configured access token" };
    }
    const tokens = this.#deps.tokens;
    if (!tokens) {
      return {
        message:
          request.installationId === undefined
            ? "no installation: cloning anonymously"
            : "no GitHub App configured: cloning anonymously",
      };
    }
    let installationId = request.installationId;
    let how = "the push's";
    if (installationId === undefined) {
      installationId = await tokens.installationFor?.(request.repoUrl);
      if (installationId === undefined) {
        return { message: "the GitHub App is not installed on the repository: cloning anonymously" };
      }
      how = "the repository's";
    }
    const minted = await tokens.installationToken(installationId);
    return {
      token: minted.token,
      message: `installation token minted for ${how} installation ${installationId}`,
      data: { installation_id: installationId, expires_at: minted.expires_at },
    };
  }

  /**
   * The branch the repository's tabbify.toml at the request's commit deploys from (`[app].branch`),
   * undefined when it names none. Throws when the file is missing, unreadable or invalid: the
   * caller decides what that means for the push.
   */
  async manifestBranch(request: DeployRequest): Promise<string | undefined> {
    const { token } = await this.#acquireToken(request);
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

  async #supervisors(state: DeployState): Promise<RosterSupervisor[]> {
    state.supervisors ??= await this.#deps.roster.supervisors();
    return state.supervisors;
  }

  readonly #steps: Record<StepName, (state: DeployState) => Promise<StepOutcome>> = {
    mint_token: async (state) => {
      const acquired = await this.#acquireToken(state.plan.request);
      if (acquired.token !== undefined) {
        this.#rememberSecret(state.plan.id, acquired.token);
        state.cloneToken = acquired.token;
      }
      return { message: acquired.message, ...(acquired.data ? { data: acquired.data } : {}) };
    },

    fetch_manifest: async (state) => {
      const { request } = state.plan;
      const ref = request.sha ?? request.ref;
      const source = await this.#deps.manifests.fetchManifest(request.repoUrl, ref, state.cloneToken);
      if (source === null) {
        throw new TabbifyError(
          "TABBIFY_TOML_MISSING",
          `${TABBIFY_TOML}: not found in ${redactUrl(request.repoUrl)} at ${ref}`,
        );
      }
      state.manifestToml = source;
      state.manifest = parseTabbifyToml(source);
      state.appUuid = resolveAppUuid(request.appUuid, state.manifest.app.id, request.repoUrl);
      await this.#deps.store.update(state.plan.id, { app_uuid: state.appUuid });
      return {
        message: `${TABBIFY_TOML} read: app ${state.manifest.app.name} (${state.appUuid})`,
        data: {
          app_uuid: state.appUuid,
          app_name: state.manifest.app.name,
          deploy_targets: state.manifest.deploy.length,
        },
      };
    },

    pick_builder: async (state) => {
      const hint = state.plan.request.builder ?? state.manifest!.build.builder;
      state.builder = pickBuilder(hint, await this.#supervisors(state));
      return { message: `builder: ${state.builder.name}`, data: { builder: state.builder.name } };
    },

    capability_check: async (state) => {
      const supervisors = await this.#supervisors(state);
      const manifest = state.manifest!;
      state.targets = resolveTargets(state.plan.request.targets, manifest.deploy, supervisors, manifest.env);
      checkCapabilities(state.targets, supervisors);
      const summary = state.targets.map((t) => ({ supervisor: t.supervisor, runtime: t.runtime }));
      return {
        message: `targets: ${summary.map((t) => `${t.supervisor}/${t.runtime}`).join(", ")}`,
        data: { targets: summary },
      };
    },

    build_and_push: async (state) => {
      const registry = this.#deps.registry;
      if (!registry)
        throw new TabbifyError("REGISTRY_MISSING", "no registry configured: nowhere to push the image");
      const { request } = state.plan;
      const appUuid = state.appUuid!;
      const manifest = state.manifest!;
      const pushToken = await registry.pushToken(request.tenant, appUuid);
      this.#rememberSecret(state.plan.id, pushToken);
      const client = this.#deps.supervisorClient(state.builder!);
      const { log, flush } = this.#stepLog(state, "build_and_push");
      const buildRequest: BuildRequest = {
        repo_url: request.repoUrl,
        ref: request.sha ?? request.ref,
        tenant: request.tenant,
        app_uuid: appUuid,
        registry: registry.host,
        image_repository: `${registry.host}/${request.tenant.toLowerCase()}/${appUuid}`,
        push_token: pushToken,
        build_kind: "docker",
        context: manifest.build.context,
        dockerfile: manifest.build.dockerfile,
        manifest_toml: state.manifestToml!,
      };
      if (state.cloneToken !== undefined) buildRequest.clone_token = state.cloneToken;
      if (manifest.build.stableTag !== undefined) buildRequest.stable_tag = manifest.build.stableTag;
      let built: BuildResult;
      try {
        built = await client.build(buildRequest, log);
      } catch (err) {
        await flush();
        if (isTabbifyError(err, "BUILD_FAILED")) throw err;
        throw new TabbifyError(
          "BUILD_FAILED",
          `build on ${state.builder!.name} failed: ${errorMessage(err)}`,
        );
      }
      await flush();
      if (request.sha !== undefined && built.commit_sha.toLowerCase() !== request.sha.toLowerCase()) {
        throw new TabbifyError(
          "BUILD_FAILED",
          `builder built commit ${built.commit_sha}, but the deploy is for ${request.sha}`,
        );
      }
      const expected = imageRef(registry.host, request.tenant, appUuid, built.commit_sha);
      if (built.image_ref !== expected) {
        throw new TabbifyError("BUILD_FAILED", `builder pushed ${built.image_ref}, expected ${expected}`);
      }
      if (!/^sha256:[0-9a-f]{64}$/.test(built.digest)) {
        throw new TabbifyError("BUILD_FAILED", `builder reported no valid image digest for ${expected}`);
      }
      state.imageRef = built.image_ref;
      state.digest = built.digest;
      await this.#deps.store.update(state.plan.id, { image_ref: built.image_ref, digest: built.digest });
      return {
        message: `pushed ${built.image_ref}`,
        data: { image_ref: built.image_ref, digest: built.digest, commit_sha: built.commit_sha },
      };
    },

    fan_out: async (state) => {
      const supervisors = await this.#supervisors(state);
      const { request } = state.plan;
      const appUuid = state.appUuid!;
      const registry = this.#deps.registry!;
      const { log, flush } = this.#stepLog(state, "fan_out");
      let pullToken: string | undefined;
      if (registry.pullToken) {
        pullToken = await registry.pullToken(request.tenant, appUuid);
        this.#rememberSecret(state.plan.id, pullToken);
      }
      const results = await Promise.all(
        state.targets!.map(async (target): Promise<TargetResult> => {
          const result: TargetResult = {
            supervisor: target.supervisor,
            runtime: target.runtime,
            success: false,
            app_ula: deriveAppUla(appUuid),
            digest: state.digest!,
          };
          const supervisor = supervisors.find((s) => s.name === target.supervisor)!;
          const body: SupervisorDeployRequest = {
            ref: state.imageRef!,
            digest: state.digest!,
            runtime: target.runtime,
            env: target.env,
            manifest_toml: state.manifestToml!,
          };
          if (pullToken !== undefined) body.registry_token = pullToken;
          try {
            const reply = await this.#deps.supervisorClient(supervisor).deploy(appUuid, body);
            if (reply.app_ula) result.app_ula = reply.app_ula;
            result.success = true;
            log(`${target.supervisor}: deployed (${reply.state})`);
          } catch (err) {
            result.error = this.#scrub(state.plan.id, errorMessage(err));
            log(`${target.supervisor}: deploy failed: ${result.error}`);
          }
          return result;
        }),
      );
      await flush();
      state.results = results;
      await this.#deps.store.update(state.plan.id, { results });
      const ok = results.filter((r) => r.success).length;
      return { message: `${ok} of ${results.length} targets accepted the image` };
    },

    verify: async (state) => {
      const supervisors = await this.#supervisors(state);
      const appUuid = state.appUuid!;
      const { log, flush } = this.#stepLog(state, "verify");
      await Promise.all(
        state.results.map(async (result) => {
          if (!result.success) return;
          const supervisor = supervisors.find((s) => s.name === result.supervisor)!;
          try {
            const status = await this.#deps.supervisorClient(supervisor).app(appUuid);
            if (status === null) throw new Error("the supervisor no longer knows the app");
            if (status.digest !== state.digest) {
              throw new Error(
                `runner runs ${status.digest ?? "an unknown digest"}, expected ${state.digest}`,
              );
            }
            log(`${result.supervisor}: runs ${state.digest}`);
          } catch (err) {
            result.success = false;
            result.error = `verify: ${this.#scrub(state.plan.id, errorMessage(err))}`;
            log(`${result.supervisor}: ${result.error}`);
          }
        }),
      );
      if (this.#deps.probeApp && state.results.some((r) => r.success)) {
        try {
          await this.#deps.probeApp(appUuid);
          log(`/app/${appUuid} answers`);
        } catch (err) {
          const reason = `verify: /app/${appUuid} does not answer: ${this.#scrub(state.plan.id, errorMessage(err))}`;
          log(reason);
          for (const result of state.results) {
            if (!result.success) continue;
            result.success = false;
            result.error = reason;
          }
        }
      }
      await flush();
      await this.#deps.store.update(state.plan.id, { results: state.results });
      const ok = state.results.filter((r) => r.success).length;
      return { message: `${ok} of ${state.results.length} targets verified` };
    },
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
