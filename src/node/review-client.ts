import type { NodeClient } from "./client.js";
import type { GrantView, PlanView } from "./deploy-review-store.js";

/**
 * Review plans and grants of handler deploys (deploy-review-routes.ts), for `tcli review`,
 * `tcli grants`, `tcli revoke-grant` and the dashboard's review page: functions over one
 * NodeClient, like releases-client.ts.
 */

const planPath = (id: string) => `/v1/deploy/plans/${encodeURIComponent(id)}`;

export function plan(client: NodeClient, id: string): Promise<PlanView> {
  return client.request("GET", planPath(id));
}

export function approvePlan(client: NodeClient, id: string, mode: "once" | "grant"): Promise<PlanView> {
  return client.request("POST", `${planPath(id)}/approve`, { mode });
}

export function rejectPlan(client: NodeClient, id: string): Promise<PlanView> {
  return client.request("POST", `${planPath(id)}/reject`, {});
}

/** Every grant of the caller's tenant, or one project's. */
export async function grants(client: NodeClient, project?: string): Promise<GrantView[]> {
  const path = project ? `/v1/projects/${encodeURIComponent(project)}/grants` : "/v1/grants";
  return (await client.request<{ grants: GrantView[] }>("GET", path)).grants;
}

export async function revokeGrant(client: NodeClient, id: string): Promise<GrantView> {
  return (
    await client.request<{ grant: GrantView }>("POST", `/v1/grants/${encodeURIComponent(id)}/revoke`, {})
  ).grant;
}
