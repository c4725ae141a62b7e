import type { FastifyInstance } from "fastify";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import type { RegistryAccess } from "../pipeline/deps.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import type { AuditLog } from "./audit-log.js";
import { registerCatalogRoutes } from "./catalog-routes.js";
import { registerDeployReviewRoutes } from "./deploy-review-routes.js";
import { DeployReviewStore } from "./deploy-review-store.js";
import { registerDeploySessionRoutes } from "./deploy-session-routes.js";
import { nodeImageSignatures } from "./image-signatures.js";
import { ReleaseStore } from "./releases-store.js";

/** Handler deploys with a contract: sessions, review plans, grants and proof rows, on one node. */
export interface ContractDeploysOptions {
  store: Store;
  audit: AuditLog;
  callers: CallerResolver;
  coordinator: RosterCoordinator;
  dataDir: string;
  supervisorKey: string | undefined;
  /** The platform registry handler bundles go through (none: handler deploys are refused). */
  registry?: RegistryAccess | undefined;
  selfUrl: () => string;
  /** Tests shorten these. */
  planTtlMs?: number;
  sessionTtlMs?: number;
}

export function attachContractDeploys(app: FastifyInstance, opts: ContractDeploysOptions): void {
  const reviews = new DeployReviewStore(opts.store);
  registerDeployReviewRoutes(app, { reviews, callers: opts.callers, audit: opts.audit });
  const releases = new ReleaseStore(opts.store, opts.audit);
  const signatures = opts.registry
    ? nodeImageSignatures({ registry: opts.registry, dataDir: opts.dataDir })
    : undefined;
  registerDeploySessionRoutes(app, { ...opts, reviews, releases, signatures });
  registerCatalogRoutes(app, { store: opts.store, callers: opts.callers, registry: opts.registry });
}
