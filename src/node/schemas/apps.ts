import { Type } from "@sinclair/typebox";
import {
  AppParams,
  errorResponses,
  NullableString,
  nodeKey,
  nodeKeyOrTenant,
  open,
  wholeNumber,
} from "./common.js";
import { DeployStatus } from "./deploy.js";

/**
 * Schemas of the app registry API (`/api/v1/apps…`, node key or a tenant token for its own apps):
 * records, runtime operations, logs, deploys by name, progress and releases.
 */

export const App = open({
  name: Type.String(),
  uuid: Type.String(),
  tenant: Type.String(),
  description: Type.String(),
  repo_url: NullableString,
  branch: Type.String(),
  servers: Type.Array(Type.String()),
  runtime: Type.String(),
  build: open({
    kind: Type.String(),
    context: Type.String(),
    dockerfile: Type.String(),
    builder: NullableString,
  }),
  env: Type.Array(Type.String()),
  environments: Type.Array(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
  created_at: Type.String(),
  updated_at: Type.String(),
});

const DryRun = Type.Object(
  {
    dry_run: Type.Optional(Type.String({ description: "1 or true: say what would change, change nothing" })),
  },
  { additionalProperties: true },
);

/** What a PUT, PATCH or DELETE answers: whether it changed anything, and the diff. */
export const Mutation = open({ dry_run: Type.Boolean(), changed: Type.Boolean() });

const tag = ["apps"];

export const listAppsSchema = {
  summary: "The registry's apps the caller may see (a tenant token sees its tenant's)",
  tags: tag,
  security: nodeKeyOrTenant,
  response: { 200: Type.Object({ apps: Type.Array(App) }), ...errorResponses },
};

export const getAppSchema = {
  summary: "One app's record",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  response: { 200: App, ...errorResponses },
};

/**
 * The record's fields are checked by the registry's own parser (apps-schema.ts): its messages
 * name the field and the rule, with cross-field checks a schema cannot say.
 */
export const putAppSchema = {
  summary: "Create or replace an app's record (201 created, 200 replaced)",
  tags: tag,
  security: nodeKeyOrTenant,
  "x-error-code": "APP_INVALID",
  params: AppParams,
  querystring: DryRun,
  body: Type.Object({}, { additionalProperties: true, "x-message": "the body must be a JSON object" }),
  response: { 200: Mutation, 201: Mutation, ...errorResponses },
};

export const patchAppSchema = {
  summary: "Change some fields of an app's record (JSON merge patch)",
  tags: tag,
  security: nodeKeyOrTenant,
  "x-error-code": "APP_INVALID",
  params: AppParams,
  querystring: DryRun,
  consumes: ["application/json", "application/merge-patch+json"],
  body: Type.Object({}, { additionalProperties: true, "x-message": "the body must be a JSON object" }),
  response: { 200: Mutation, ...errorResponses },
};

export const deleteAppSchema = {
  summary: "Remove an app's record",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  querystring: DryRun,
  response: { 200: Mutation, ...errorResponses },
};

export const registryExportSchema = {
  summary: "Every app record, also written as a snapshot file under the data dir (node key)",
  tags: tag,
  security: nodeKey,
  response: {
    200: open({ exported_at: Type.String(), apps: Type.Array(App), snapshot: Type.String() }),
    ...errorResponses,
  },
};

export const AuditEvent = open({
  seq: Type.Integer(),
  at: Type.String(),
  actor: Type.String(),
  action: Type.String(),
  subject: Type.String(),
  before: Type.Optional(Type.Unknown()),
  after: Type.Optional(Type.Unknown()),
  prev_hash: Type.String(),
  event_hash: Type.String(),
});

export const auditSchema = {
  summary: "The audit chain, a page at a time (node key)",
  tags: ["audit"],
  security: nodeKey,
  querystring: Type.Object(
    {
      after: Type.Optional(wholeNumber("after", Number.MAX_SAFE_INTEGER)),
      limit: Type.Optional(wholeNumber("limit", 1000)),
    },
    { additionalProperties: true },
  ),
  response: {
    200: open({ events: Type.Array(AuditEvent), next_after: Type.Optional(Type.Integer()) }),
    ...errorResponses,
  },
};

const TargetAnswer = open({
  supervisor: Type.String(),
  ok: Type.Boolean(),
  status: Type.Union([Type.Integer(), Type.Null()]),
  state: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  /** A failed start or swap: the last lines of the app's log on that target. */
  log_tail: Type.Optional(Type.Array(Type.String())),
});

export const AppOpResult = Type.Object({
  app: Type.String(),
  uuid: Type.String(),
  environment: Type.String({ description: "the environment operated on" }),
  run_as: Type.String({ description: "the uuid its workloads run as (the app's own, or the environment's)" }),
  action: Type.String(),
  targets: Type.Array(TargetAnswer),
});

/** `?env=`: one of the app's environments (default: prod, whose workloads run as the app's own uuid, or the first environment when there is no prod). */
const EnvironmentQuery = Type.Optional(
  Type.String({ description: "one of the app's environments; default: prod, else its first", maxLength: 63 }),
);

export function appOpSchema(op: string) {
  return {
    summary: `${op[0]!.toUpperCase()}${op.slice(1)} the app on every target supervisor`,
    tags: tag,
    security: nodeKeyOrTenant,
    params: AppParams,
    querystring: Type.Object({ env: EnvironmentQuery }, { additionalProperties: true }),
    response: { 200: AppOpResult, ...errorResponses },
  };
}

/** What `since` accepts on the log routes (checked again, and resolved, by logQuery). */
export const LOG_SINCE_PATTERN =
  "^(\\d{1,9}[smhd]|\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d(:\\d\\d(\\.\\d{1,9})?)?(Z|[+-]\\d\\d:\\d\\d))$";

export const LogsQuery = Type.Object(
  {
    tail: Type.Optional(wholeNumber("tail", 10_000, 6)),
    follow: Type.Optional(
      Type.Union(
        ["", "0", "1", "true", "false"].map((v) => Type.Literal(v)),
        { "x-message": "follow must be 1 or 0" },
      ),
    ),
    env: EnvironmentQuery,
    since: Type.Optional(
      Type.String({
        pattern: LOG_SINCE_PATTERN,
        description: "only lines since then: a duration back from now (90s, 10m, 2h, 7d) or an RFC 3339 time",
        "x-message":
          "since must be a duration back from now (90s, 10m, 2h, 7d) or a time like 2026-12-06T06:00:00Z",
      }),
    ),
    timestamps: Type.Optional(
      Type.Union(
        ["", "0", "1", "true", "false"].map((v) => Type.Literal(v)),
        {
          "x-message": "timestamps must be 1 or 0",
          description: "1: keep each line's stamp (when the runner got it)",
        },
      ),
    ),
  },
  { additionalProperties: true },
);

export const appLogsSchema = {
  summary: "The app's runtime output from every target, merged line by line (text/plain)",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  querystring: LogsQuery,
  produces: ["text/plain"],
  response: { 200: Type.String({ description: "lines prefixed `<supervisor> | `" }), ...errorResponses },
};

export const AppDeployBody = Type.Union(
  [
    Type.Object(
      { ref: Type.Optional(Type.String({ "x-message": "ref: must be a branch name or a commit sha" })) },
      { additionalProperties: true },
    ),
    Type.Null(),
  ],
  { "x-message": "the body must be {ref?}" },
);

export const appDeploySchema = {
  summary: "Deploy the app from its repo_url at ref (default its branch)",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  body: Type.Optional(AppDeployBody),
  response: {
    202: open({
      id: Type.String(),
      status: Type.Literal("accepted"),
      app: Type.String(),
      ref: Type.String(),
      status_url: Type.String(),
      progress_url: Type.String(),
    }),
    ...errorResponses,
  },
};

export const DeployProgressAnswer = open({
  app: Type.String(),
  deploy: DeployStatus,
  steps: Type.Array(
    open({
      step: Type.String(),
      state: Type.String(),
      started_at: Type.String(),
      ended_at: Type.Optional(Type.String()),
      log_tail: Type.Array(Type.String()),
    }),
  ),
});

export const appProgressSchema = {
  summary: "The app's latest deploy, step by step with each step's last log lines",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  response: { 200: DeployProgressAnswer, ...errorResponses },
};

export const RuntimeStatusAnswer = open({
  app: Type.String(),
  uuid: Type.String(),
  targets: Type.Array(
    open({
      supervisor: Type.String(),
      on_roster: Type.Boolean(),
      runner_on_roster: Type.Boolean(),
      runner_last_seen: Type.Optional(Type.String()),
      last_deploy: Type.Optional(
        open({
          id: Type.String(),
          success: Type.Boolean(),
          digest: NullableString,
          finished_at: NullableString,
        }),
      ),
      supervisor_says: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  ),
});

export const runtimeStatusSchema = {
  summary: "Where the app runs: each target's roster entry, last deploy and the supervisor's own view",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  response: { 200: RuntimeStatusAnswer, ...errorResponses },
};
