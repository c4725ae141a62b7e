import type { FastifyInstance } from "fastify";
import type { Logger } from "../core/log.js";
import type { RepoUrlPolicy } from "../core/repo-url.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { Store } from "../store/index.js";
import { appRunningAs } from "./app-targets.js";
import { registerAppDeployRoutes } from "./apps-deploy-routes.js";
import { CallerResolver, type TenantTokenVerifier } from "./apps-identity.js";
import { AppRegistry } from "./apps-registry.js";
import { registerAppRoutes } from "./apps-routes.js";
import { DeployAuditor } from "./audit-deploys.js";
import { AuditLog } from "./audit-log.js";
import type { NodeKeyCheck } from "./auth.js";
import type { NodePipeline } from "./pipeline.js";

/**
 * Wires the app registry and the audit chain into a running node: the routes, the seed, and the
 * sweep that registers apps first seen as runners on the roster (`tcli push` deploys).
 */

export interface NodeRegistryOptions {
  /** `--seed-apps`: the parsed list, applied once to an empty registry. */
  seedApps?: unknown[];
  /** `--allowed-servers`: supervisor names apps may list besides those on the roster. */
  allowedServers?: string[];
  /** Checks tenant JWTs (the auth service's public key); absent ⇒ only the node key is accepted. */
  verifyTenantToken?: TenantTokenVerifier;
  /** Mutation lock wait before 409. Default 5 s. */
  lockTimeoutMs?: number;
}

export interface NodeRegistryContext {
  store: Store;
  dataDir: string;
  keyCheck: NodeKeyCheck;
  coordinator: RosterCoordinator;
  /** Values no audit event may contain (node key, webhook secrets). */
  secretValues: string[];
  /** The deploy pipeline: `POST /api/v1/apps/:app/deploy` runs it; its records feed the audit. */
  pipeline: NodePipeline;
  /** Where an app's repo_url may point (the SSRF guard `POST /v1/deploy` uses too). */
  repoPolicy: RepoUrlPolicy;
  /** The supervisors' API key, for asking a target about an app. */
  supervisorKey?: string | undefined;
  /** The ssh importer: an app whose repo_url is ssh is fetched by the node. */
  sshRepos?: (source: string, ref: string) => Promise<{ repoUrl: string; sha: string }>;
  logger: Logger;
}

export interface AttachedRegistry {
  registry: AppRegistry;
  audit: AuditLog;
  /** Hand to the deploy routes: every accepted deploy and its end go into the chain. */
  deploys: DeployAuditor;
  /** Who a bearer speaks for (node key or tenant token); the git routes take it as Basic password. */
  callers: CallerResolver;
  close(): Promise<void>;
}

/** Tenant of apps first seen as runners: nothing on the roster says whose they are. */
export const ROSTER_TENANT = "default";

export async function attachRegistry(
  app: FastifyInstance,
  ctx: NodeRegistryContext,
  opts: NodeRegistryOptions = {},
): Promise<AttachedRegistry> {
  const audit = new AuditLog(ctx.store, { secretValues: ctx.secretValues });
  const allowed = new Set(opts.allowedServers ?? []);
  const registry = new AppRegistry({
    store: ctx.store,
    audit,
    servers: { allowed: () => new Set([...allowed, ...ctx.coordinator.supervisors().map((s) => s.name)]) },
    ...(opts.lockTimeoutMs !== undefined ? { lockTimeoutMs: opts.lockTimeoutMs } : {}),
  });
  if (opts.seedApps !== undefined) {
    const created = await registry.seedOnce(opts.seedApps);
    if (created > 0) ctx.logger.info("registry seeded", { apps: created });
  }
  const callers = new CallerResolver({
    keyCheck: ctx.keyCheck,
    ...(opts.verifyTenantToken ? { verifyTenantToken: opts.verifyTenantToken } : {}),
  });
  registerAppRoutes(app, { registry, audit, callers, dataDir: ctx.dataDir });

  const deploys = new DeployAuditor({
    audit,
    registry,
    deploys: ctx.pipeline.store,
    logger: ctx.logger,
    endTasks: ctx.pipeline,
  });
  // Runners announce their app's uuid; the first sighting of one the registry lacks registers it,
  // unless a deploy is bringing that app up: the deploy's end registers it under its own name
  // and tenant, which a roster entry (a made-up name, no tenant) would otherwise take first.
  const known = new Set<string>();
  let sweeping = false;
  const sweep = async () => {
    if (sweeping) return;
    sweeping = true;
    try {
      const deploying = await deploys.appsInFlight();
      for (const runner of ctx.coordinator.runners()) {
        const uuid = runner.app_uuid;
        if (!uuid || known.has(uuid) || deploying.has(uuid)) continue;
        // A runner of another environment of a known app (core/address.ts) is that app's.
        if (!(await appRunningAs(registry, uuid)))
          await registry.ensure("system", { uuid, tenant: ROSTER_TENANT });
        known.add(uuid);
      }
    } catch (err) {
      ctx.logger.warn("registering roster apps failed", {
        error: err instanceof Error ? err.message : String(err),
      });
    } finally {
      sweeping = false;
    }
  };
  const timer = setInterval(() => void sweep(), 2_000);
  timer.unref();
  registerAppDeployRoutes(app, {
    registry,
    callers,
    pipeline: ctx.pipeline,
    repoPolicy: ctx.repoPolicy,
    supervisorKey: ctx.supervisorKey,
    observer: deploys,
    coordinator: ctx.coordinator,
    store: ctx.store,
    sshRepos: ctx.sshRepos,
  });
  return {
    registry,
    audit,
    deploys,
    callers,
    close: async () => {
      clearInterval(timer);
      await deploys.close();
    },
  };
}
