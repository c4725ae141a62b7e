import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { checkRepoUrl, type RepoUrlPolicy } from "../core/repo-url.js";
import { isSshRepoUrl } from "../core/ssh-remote.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { DeployRecord } from "../pipeline/executor.js";
import type { DeployRequest } from "../pipeline/plan.js";
import type { Store } from "../store/index.js";
import { SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AppRegistry, Caller } from "./apps-registry.js";
import { branchProblem } from "./apps-schema.js";
import type { DeployObserver } from "./audit-deploys.js";
import { statusBody } from "./deploy-routes.js";
import type { NodePipeline } from "./pipeline.js";
import { applyWaitQuery } from "./releases-lock.js";
import {
  appDeploySchema,
  appProgressSchema,
  type RuntimeStatusAnswer,
  runtimeStatusSchema,
} from "./schemas/apps.js";

/**
 * The deploy surface of a registered app (kua-deploy's), same bearer rules as the registry:
 *
 *   POST /api/v1/apps/:app/deploy          optional {ref}; default the app's branch → 202 {id, …}
 *   GET  /api/v1/apps/:app/progress        the current or last deploy: status and each step with a log tail
 *   GET  /api/v1/apps/:app/runtime-status  per target: what the roster and the supervisor say
 */

const LOG_TAIL = 20;

export interface AppDeployRoutesOptions {
  registry: AppRegistry;
  callers: CallerResolver;
  pipeline: NodePipeline;
  repoPolicy: RepoUrlPolicy;
  /** The supervisors' API key: `runtime-status` asks each target for its own view. */
  supervisorKey?: string | undefined;
  observer: DeployObserver;
  coordinator: RosterCoordinator;
  store: Store;
  /** How an ssh repo_url becomes one the builder clones (the node fetches it); absent ⇒ refused. */
  sshRepos?: ((source: string, ref: string) => Promise<{ repoUrl: string; sha: string }>) | undefined;
}

export function registerAppDeployRoutes(app: FastifyInstance, opts: AppDeployRoutesOptions): void {
  const { registry, callers, pipeline, repoPolicy, observer, coordinator, store } = opts;
  // Deploys started here are known at once; the store knows an app's deploys once their
  // fetch_manifest step has resolved the uuid (any node's, any trigger's).
  const startedHere = new Map<string, string>();
  const latestDeploy = async (uuid: string): Promise<DeployRecord | undefined> => {
    const row = await store.db
      .selectFrom("deploys")
      .select("id")
      .where("app_uuid", "=", uuid)
      .orderBy("created_at", "desc")
      .limit(1)
      .executeTakeFirst();
    const fromStore = row ? await pipeline.store.get(row.id) : undefined;
    const localId = startedHere.get(uuid);
    const local = localId && localId !== row?.id ? await pipeline.store.get(localId) : undefined;
    if (!local) return fromStore;
    if (!fromStore) return local;
    return local.created_at > fromStore.created_at ? local : fromStore;
  };

  app.register(async (untyped) => {
    // Handlers take their params, query and body types from the route schemas.
    const scope = untyped.withTypeProvider<TypeBoxTypeProvider>();
    const callerOf = new WeakMap<FastifyRequest, Caller>();
    scope.addHook("onRequest", async (req) => {
      callerOf.set(req, await callers.resolve(req.headers.authorization));
    });

    scope.post("/api/v1/apps/:app/deploy", { schema: appDeploySchema }, async (req, reply) => {
      const caller = callerOf.get(req) as Caller;
      const target = await registry.get(caller, req.params.app);
      if (target.repo_url === null) {
        throw new TabbifyError(
          "APP_INVALID",
          `repo_url: app ${target.name} has no repository to deploy from`,
        );
      }
      const ssh = isSshRepoUrl(target.repo_url);
      if (ssh && opts.sshRepos === undefined) {
        throw new TabbifyError("SSH_REMOTE_UNSUPPORTED", "this node fetches no ssh remotes");
      }
      // A tenant writes its app's repo_url: checked here as POST /v1/deploy checks its body (an
      // ssh host is checked by the ssh importer, under the same policy).
      const reach = ssh ? undefined : await checkRepoUrl(target.repo_url, repoPolicy);
      if (reach !== undefined && "problem" in reach)
        throw new TabbifyError("REPO_URL_REFUSED", reach.problem);
      const body = (req.body ?? {}) as { ref?: unknown };
      if (typeof body !== "object" || Array.isArray(body))
        throw new TabbifyError("BAD_REQUEST", "the body must be {ref?}");
      const ref = body.ref ?? target.branch;
      const refProblem =
        typeof ref === "string" && /^[0-9a-f]{40}$/i.test(ref) ? undefined : branchProblem(ref);
      if (refProblem) throw new TabbifyError("APP_INVALID", `ref: ${refProblem}`);
      const request: DeployRequest = {
        trigger: "api",
        repoUrl: target.repo_url,
        ref: ref as string,
        tenant: target.tenant,
        appUuid: target.uuid,
      };
      if (/^[0-9a-f]{40}$/i.test(ref as string)) request.sha = (ref as string).toLowerCase();
      if (ssh) {
        const fetched = await opts.sshRepos!(target.repo_url, ref as string);
        request.repoUrl = fetched.repoUrl;
        request.ref = fetched.sha;
        request.sha = fetched.sha;
      }
      if (target.build.builder) request.builder = target.build.builder;
      if (target.servers.length > 0) {
        request.targets = target.servers.map((supervisor) => ({ supervisor, runtime: target.runtime }));
      }
      await applyWaitQuery(request, req.query, pipeline.lock);
      // An ssh remote is now the node's own push repository: cloned with the node's token.
      const id = await pipeline.start(ssh ? "node" : pipeline.forgeOf(request.repoUrl), request);
      startedHere.set(target.uuid, id);
      await observer.accepted(caller.actor, id, request);
      return reply.code(202).send({
        id,
        status: "accepted",
        app: target.name,
        ref: request.ref,
        status_url: `/v1/deploy/${id}/status`,
        progress_url: `/api/v1/apps/${target.name}/progress`,
      });
    });

    scope.get("/api/v1/apps/:app/progress", { schema: appProgressSchema }, async (req) => {
      const target = await registry.get(callerOf.get(req) as Caller, req.params.app);
      const record = await latestDeploy(target.uuid);
      if (!record) throw new TabbifyError("DEPLOY_NOT_FOUND", `app ${target.name} has not been deployed yet`);
      const steps = new Map<
        string,
        { step: string; state: string; started_at: string; ended_at?: string; log_tail: string[] }
      >();
      for (const event of record.events) {
        if (event.step === "deploy") continue;
        let step = steps.get(event.step);
        if (!step) {
          step = { step: event.step, state: "running", started_at: event.ts, log_tail: [] };
          steps.set(event.step, step);
        }
        if (event.type.endsWith("_finished") || event.type.endsWith("_failed")) {
          step.state = event.type.endsWith("_failed") ? "failed" : "succeeded";
          step.ended_at = event.ts;
        }
        if (event.message) {
          step.log_tail.push(event.message);
          if (step.log_tail.length > LOG_TAIL) step.log_tail.shift();
        }
      }
      return { app: target.name, deploy: statusBody(record), steps: [...steps.values()] };
    });

    scope.get("/api/v1/apps/:app/runtime-status", { schema: runtimeStatusSchema }, async (req) => {
      const target = await registry.get(callerOf.get(req) as Caller, req.params.app);
      const record = await latestDeploy(target.uuid);
      const runner = coordinator.runnerFor(target.uuid);
      const names = new Set([...target.servers, ...(record?.results.map((r) => r.supervisor) ?? [])]);
      if (runner?.parent) names.add(runner.parent);
      const supervisors = new Map(coordinator.supervisors().map((s) => [s.name, s]));
      const targets = await Promise.all(
        [...names].sort().map(async (name) => {
          const result = record?.results.find((r) => r.supervisor === name);
          const entry: Static<typeof RuntimeStatusAnswer>["targets"][number] = {
            supervisor: name,
            on_roster: supervisors.has(name),
            runner_on_roster: runner?.parent === name,
          };
          if (runner?.parent === name) entry.runner_last_seen = runner.last_seen;
          if (result && record) {
            entry.last_deploy = {
              id: record.id,
              success: result.success,
              digest: result.digest ?? null,
              finished_at: record.finished_at ?? null,
            };
          }
          const address = supervisors.get(name)?.address;
          if (address) entry.supervisor_says = await askSupervisor(address, target.uuid, opts.supervisorKey);
          return entry;
        }),
      );
      return { app: target.name, uuid: target.uuid, targets };
    });
  });
}

/** The supervisor's own view of the app (state, restart status, since when), or why it is unknown. */
async function askSupervisor(
  address: string,
  uuid: string,
  supervisorKey: string | undefined,
): Promise<Record<string, unknown>> {
  try {
    return await new SupervisorApi({ baseUrl: address, authToken: supervisorKey }).describe(uuid, {
      timeoutMs: 3_000,
    });
  } catch (err) {
    const refused = supervisorRefusal(err);
    if (refused) return { error: `HTTP ${refused.status}` };
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
