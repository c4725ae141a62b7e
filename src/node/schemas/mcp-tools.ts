import { type TObject, Type } from "@sinclair/typebox";
import { AppParams } from "./common.js";
import { PromoteBody, RollbackBody } from "./releases.js";

/**
 * The node's MCP tools: each is one REST route of the node, its input schema made of that
 * route's params, query and body schemas. A tool call is that route called with the caller's
 * own credential, so tenant scoping and errors are the REST API's.
 */

export interface RestCall {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  /** Read the answer as text (log streams) instead of JSON. */
  text?: boolean;
}

export interface McpTool {
  name: string;
  description: string;
  inputSchema: TObject;
  /** The REST call a validated input makes. */
  call(input: Record<string, unknown>): RestCall;
  /** What the audit event's subject is. */
  subject(input: Record<string, unknown>): string;
}

const app = (input: Record<string, unknown>) => encodeURIComponent(String(input.app));
const appSubject = (input: Record<string, unknown>) => `app:${String(input.app)}`;
const rollbackFields = RollbackBody.anyOf[0];
const TAIL_MAX = 10_000;

export const mcpTools: McpTool[] = [
  {
    name: "list_supervisors",
    description: "The supervisors on the node's roster (GET /v1/supervisors; node key only).",
    inputSchema: Type.Object({}),
    call: () => ({ method: "GET", path: "/v1/supervisors" }),
    subject: () => "roster",
  },
  {
    name: "list_apps",
    description: "The apps the caller may see, with their records (GET /api/v1/apps).",
    inputSchema: Type.Object({}),
    call: () => ({ method: "GET", path: "/api/v1/apps" }),
    subject: () => "registry",
  },
  {
    name: "get_app",
    description: "One app's record (GET /api/v1/apps/{app}).",
    inputSchema: AppParams,
    call: (i) => ({ method: "GET", path: `/api/v1/apps/${app(i)}` }),
    subject: appSubject,
  },
  {
    name: "start_app",
    description: "Start the app on every target supervisor (POST /api/v1/apps/{app}/start).",
    inputSchema: AppParams,
    call: (i) => ({ method: "POST", path: `/api/v1/apps/${app(i)}/start`, body: {} }),
    subject: appSubject,
  },
  {
    name: "stop_app",
    description: "Stop the app on every target supervisor (POST /api/v1/apps/{app}/stop).",
    inputSchema: AppParams,
    call: (i) => ({ method: "POST", path: `/api/v1/apps/${app(i)}/stop`, body: {} }),
    subject: appSubject,
  },
  {
    name: "deploy",
    description:
      "Deploy the app from its repository at ref, default its branch (POST /api/v1/apps/{app}/deploy). Poll deploy_status with the id.",
    inputSchema: Type.Object({
      ...AppParams.properties,
      ref: Type.Optional(Type.String({ description: "Branch, tag or commit sha" })),
    }),
    call: (i) => ({
      method: "POST",
      path: `/api/v1/apps/${app(i)}/deploy`,
      body: i.ref === undefined ? {} : { ref: i.ref },
    }),
    subject: appSubject,
  },
  {
    name: "deploy_status",
    description: "A deploy's state and results (GET /v1/deploy/{id}/status; node key only).",
    inputSchema: Type.Object({ id: Type.String({ maxLength: 200 }) }),
    call: (i) => ({ method: "GET", path: `/v1/deploy/${encodeURIComponent(String(i.id))}/status` }),
    subject: (i) => `deploy:${String(i.id)}`,
  },
  {
    name: "logs_tail",
    description: "The app's last log lines from every target (GET /api/v1/apps/{app}/logs?tail=N).",
    inputSchema: Type.Object({
      ...AppParams.properties,
      tail: Type.Optional(Type.Integer({ minimum: 1, maximum: TAIL_MAX, default: 100 })),
    }),
    call: (i) => ({
      method: "GET",
      path: `/api/v1/apps/${app(i)}/logs?tail=${Number(i.tail ?? 100)}&follow=0`,
      text: true,
    }),
    subject: appSubject,
  },
  {
    name: "releases",
    description:
      "The app's releases and the environments each is current in (GET /api/v1/apps/{app}/releases).",
    inputSchema: AppParams,
    call: (i) => ({ method: "GET", path: `/api/v1/apps/${app(i)}/releases` }),
    subject: appSubject,
  },
  {
    name: "promote",
    description: "Run what environment `from` verifiably ran in `to` (POST /api/v1/apps/{app}/promote).",
    inputSchema: Type.Object({ ...AppParams.properties, ...PromoteBody.properties }),
    call: (i) => {
      const { app: _name, ...body } = i;
      return { method: "POST", path: `/api/v1/apps/${app(i)}/promote`, body };
    },
    subject: appSubject,
  },
  {
    name: "rollback",
    description: "Run the environment's previous release again, or `to` (POST /api/v1/apps/{app}/rollback).",
    inputSchema: Type.Object({ ...AppParams.properties, ...rollbackFields.properties }),
    call: (i) => {
      const { app: _name, ...body } = i;
      return { method: "POST", path: `/api/v1/apps/${app(i)}/rollback`, body };
    },
    subject: appSubject,
  },
  {
    name: "audit_tail",
    description: "Audit events after seq `after` (GET /api/v1/audit; node key only).",
    inputSchema: Type.Object({
      after: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    }),
    call: (i) => ({
      method: "GET",
      path: `/api/v1/audit?after=${Number(i.after ?? 0)}&limit=${Number(i.limit ?? 100)}`,
    }),
    subject: () => "audit",
  },
];
