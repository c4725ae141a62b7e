import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { CallerResolver, type TenantTokenVerifier } from "../node/apps-identity.js";
import type { NodeKeyCheck } from "../node/auth.js";
import { registerDashboardAssets } from "./assets.js";
import { registerSessionRoutes } from "./session-routes.js";
import { DashboardSessions } from "./sessions.js";

export interface DashboardOptions {
  keyCheck: NodeKeyCheck;
  verifyTenantToken?: TenantTokenVerifier | undefined;
  /** The built UI; default dist/dashboard beside the compiled node. */
  assetsDir?: string;
  sessions?: DashboardSessions;
}

/** dist/src/dashboard/index.js → dist/dashboard/. */
export const defaultAssetsDir = fileURLToPath(new URL("../../dashboard/", import.meta.url));

/**
 * The dashboard on the node: its pages and assets, its login, and the session cookie accepted by
 * the whole API. Register before any other route, so the cookie hook covers them all.
 */
export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): void {
  const callers = new CallerResolver({
    keyCheck: opts.keyCheck,
    ...(opts.verifyTenantToken ? { verifyTenantToken: opts.verifyTenantToken } : {}),
  });
  const sessions = opts.sessions ?? new DashboardSessions();
  registerSessionRoutes(app, { sessions, callers });
  registerDashboardAssets(app, opts.assetsDir ?? defaultAssetsDir, sessions);
}
