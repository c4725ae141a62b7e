import type { Static, TSchema } from "@sinclair/typebox";
import type { ProofRow } from "../contract/types.js";
import type { NodeClient } from "./client.js";
import type { PlanView } from "./deploy-review-store.js";
import type { auditEventsSchema, auditVerifySchema } from "./schemas/audit-view.js";
import type { catalogSchemas } from "./schemas/catalog.js";
import type { DeployStatus } from "./schemas/deploy.js";
import type { envSchemas, historySchemas } from "./schemas/operations.js";
import type { topologySchema } from "./schemas/roster.js";

/**
 * Typed reads of the node's views (the dashboard's pages, and any other caller of NodeClient):
 * each answer's type is its route's 200 schema, so a schema change that breaks a caller fails the
 * typecheck. Like releases-client.ts, these are functions over one NodeClient.
 */

/** What a route answers with 200, from its schema. */
export type Answer<S extends { response: { 200: TSchema } }> = Static<S["response"][200]>;

export type Environments = Answer<typeof historySchemas.environments>;
export type AppDeploys = Answer<typeof historySchemas.deploys>;
export type EnvNames = Answer<typeof envSchemas.list>;
export type AppDeployStatus = Static<typeof DeployStatus>;
export type AuditEventsPage = Answer<typeof auditEventsSchema>;
export type AuditVerdict = Answer<typeof auditVerifySchema>;
export type TopologyView = Answer<typeof topologySchema>;
export type Projects = Answer<typeof catalogSchemas.projects>;
export type RegistryCatalog = Answer<typeof catalogSchemas.catalog>;
export type { PlanView, ProofRow };

const app = (ref: string) => `/api/v1/apps/${encodeURIComponent(ref)}`;

export function environments(client: NodeClient, ref: string): Promise<Environments> {
  return client.request("GET", `${app(ref)}/environments`);
}

export function appDeploys(client: NodeClient, ref: string, limit: number): Promise<AppDeploys> {
  return client.request("GET", `${app(ref)}/deploys?limit=${limit}`);
}

export function envNames(client: NodeClient, ref: string, env: string): Promise<EnvNames> {
  return client.request("GET", `${app(ref)}/env?${new URLSearchParams({ env })}`);
}

export function appDeploy(client: NodeClient, ref: string, id: string): Promise<AppDeployStatus> {
  return client.request("GET", `${app(ref)}/deploys/${encodeURIComponent(id)}`);
}

/** The deploy's events as a text/event-stream, replayed after `after` and followed live. */
export function appDeployEvents(
  client: NodeClient,
  ref: string,
  id: string,
  after: number,
): Promise<ReadableStream<Uint8Array>> {
  return client.text(`${app(ref)}/deploys/${encodeURIComponent(id)}/events?after=${after}`);
}

export function auditEvents(client: NodeClient, query: URLSearchParams): Promise<AuditEventsPage> {
  return client.request("GET", `/v1/audit/events?${query}`);
}

export function auditVerify(client: NodeClient): Promise<AuditVerdict> {
  return client.request("GET", "/v1/audit/verify");
}

export function topology(client: NodeClient): Promise<TopologyView> {
  return client.request("GET", "/v1/topology");
}

export function projects(client: NodeClient): Promise<Projects> {
  return client.request("GET", "/v1/projects");
}

/** The project's proof rows, oldest first (the route's schema leaves a row to ledger.ts's parser). */
export function projectProofs(client: NodeClient, project: string): Promise<{ rows: ProofRow[] }> {
  return client.request("GET", `/v1/projects/${encodeURIComponent(project)}/proofs`);
}

export function registryCatalog(client: NodeClient): Promise<RegistryCatalog> {
  return client.request("GET", "/api/v1/registry/catalog");
}
