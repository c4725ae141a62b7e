import { Type } from "@sinclair/typebox";
import { AppParams, errorResponses, NullableString, nodeKey, nodeKeyOrTenant, open, Uuid } from "./common.js";

/**
 * Schemas of the node's env, deploy history, registry GC roots and events, and platform upgrade
 * routes. Each route authenticates in an `onRequest` hook (src/node/caller-first.ts), before its
 * body is parsed and validated, so a stranger never learns what is wrong with a body. Unknown body
 * fields are ignored, as they were before the schemas.
 */

type Security = { [scheme: string]: string[] }[];
const supervisorKey: Security = [{ supervisorKey: [] }];
const eventsToken: Security = [{ registryEventsToken: [] }];

/** A body that may also be absent (a POST with no body at all). */
export function optionalBody<T extends ReturnType<typeof Type.Object>>(body: T, shape: string) {
  return Type.Union([body, Type.Null()], { "x-message": shape });
}

const flag = (name: string) =>
  Type.Union(
    ["", "0", "1", "true", "false"].map((v) => Type.Literal(v)),
    { "x-message": `${name} must be 1 or 0` },
  );

const EnvName = Type.String({
  minLength: 1,
  maxLength: 64,
  "x-message": "env must be one of the app's environment names",
});

const envShape = "the body must be {env?, set?: {NAME: value}, unset?: [NAME]}";

export const EnvChangeBody = optionalBody(
  Type.Object(
    {
      env: Type.Optional(EnvName),
      set: Type.Optional(
        Type.Record(Type.String(), Type.String({ "x-message": "the value of {field} must be a string" }), {
          maxProperties: 1000,
          "x-message": "set must be an object of NAME: value",
        }),
      ),
      unset: Type.Optional(
        Type.Array(Type.String({ "x-message": "unset must be a list of names" }), {
          maxItems: 1000,
          "x-message": "unset must be a list of names",
        }),
      ),
      restart: Type.Optional(Type.Boolean({ "x-message": "restart must be true or false" })),
    },
    { additionalProperties: true, "x-message": envShape },
  ),
  envShape,
);

const EnvVarName = open({ name: Type.String(), updated_at: Type.String() });

export const envSchemas = {
  list: {
    summary: "The app's env var names (values only with ?reveal=1 and the node key)",
    tags: ["env"],
    security: nodeKeyOrTenant,
    "x-error-code": "ENV_INVALID",
    params: AppParams,
    querystring: Type.Object(
      { env: Type.Optional(Type.Union([EnvName, Type.Literal("")])), reveal: Type.Optional(flag("reveal")) },
      { additionalProperties: true },
    ),
    response: {
      200: open({
        app: Type.String(),
        uuid: Type.String(),
        environment: Type.String(),
        vars: Type.Array(EnvVarName),
        values: Type.Optional(Type.Record(Type.String(), Type.String())),
      }),
      ...errorResponses,
    },
  },
  change: {
    summary: "Set and unset the app's env vars",
    description: "Values are never echoed: the answer names what changed.",
    tags: ["env"],
    security: nodeKeyOrTenant,
    "x-error-code": "ENV_INVALID",
    params: AppParams,
    body: EnvChangeBody,
    response: {
      200: open({
        app: Type.String(),
        uuid: Type.String(),
        environment: Type.String(),
        set: Type.Array(Type.String()),
        unset: Type.Array(Type.String()),
      }),
      ...errorResponses,
    },
  },
  forSupervisor: {
    summary: "Internal: an app's env values, for the supervisor to merge into the runner's copy at spawn",
    tags: ["env"],
    security: supervisorKey,
    "x-error-code": "UUID_INVALID",
    params: Type.Object({ uuid: Type.String({ ...Uuid, "x-message": "the app uuid must be a UUID" }) }),
    response: { 200: Type.Object({ env: Type.Record(Type.String(), Type.String()) }), ...errorResponses },
  },
};

export const DeploySummary = open({
  id: Type.String(),
  status: Type.String(),
  trigger: Type.String(),
  ref: NullableString,
  created_at: Type.String(),
  finished_at: NullableString,
  digest: NullableString,
  error: Type.Union([
    open({ code: Type.String(), message: Type.String(), step: Type.String() }),
    Type.Null(),
  ]),
  targets: Type.Array(
    open({ supervisor: Type.String(), success: Type.Boolean(), error: Type.Optional(Type.String()) }),
  ),
});

/** One time an environment started running a release. */
const EnvironmentRun = open({
  release_id: Type.String(),
  digest: Type.String(),
  source: open({
    repo_url: Type.Optional(Type.String()),
    commit_sha: Type.Optional(Type.String()),
    artifact_version: Type.Optional(Type.String()),
  }),
  started_at: Type.String(),
  deploy_id: NullableString,
});

export const historySchemas = {
  deploys: {
    summary: "The app's recent deploys, newest first (?limit, 1-200)",
    tags: ["deploys"],
    security: nodeKeyOrTenant,
    params: AppParams,
    querystring: Type.Object(
      {
        limit: Type.Optional(
          Type.String({
            pattern: "^(?:[1-9][0-9]?|1[0-9]{2}|200)$",
            "x-message": "limit is a whole number from 1 to 200",
          }),
        ),
      },
      { additionalProperties: true },
    ),
    response: {
      200: Type.Object({ app: Type.String(), uuid: Type.String(), deploys: Type.Array(DeploySummary) }),
      ...errorResponses,
    },
  },
  log: {
    summary: "A deploy's stored events as text, one line each (id or `latest`)",
    tags: ["deploys"],
    security: nodeKeyOrTenant,
    params: Type.Object({
      app: AppParams.properties.app,
      id: Type.String({ minLength: 1, maxLength: 200, description: "a deploy id, or `latest`" }),
    }),
    produces: ["text/plain"],
    response: {
      200: Type.String({ description: "`<ts> <step> <type>: <message>` lines" }),
      ...errorResponses,
    },
  },
  environments: {
    summary:
      "The app's environments in order, each with the release it runs and what it ran before (newest first)",
    tags: ["releases"],
    security: nodeKeyOrTenant,
    params: AppParams,
    response: {
      200: open({
        app: Type.String(),
        uuid: Type.String(),
        environments: Type.Array(
          open({
            name: Type.String(),
            current: Type.Union([EnvironmentRun, Type.Null()]),
            runs: Type.Array(EnvironmentRun),
          }),
        ),
      }),
      ...errorResponses,
    },
  },
};

export const gcRootsSchema = {
  summary: "Digests a registry garbage collection must keep: running, promotable and the last N releases",
  tags: ["registry"],
  security: eventsToken,
  querystring: Type.Object(
    {
      keep: Type.Optional(
        Type.String({
          pattern: "^(?:[1-9][0-9]{0,3}|10000)$",
          "x-message": "keep must be a whole number from 1 to 10000",
        }),
      ),
    },
    { additionalProperties: true },
  ),
  response: {
    200: open({
      keep_releases: Type.Integer(),
      repositories: Type.Array(
        open({
          repository: Type.String(),
          app: Type.String(),
          releases: Type.Array(Type.String()),
          keep: Type.Array(open({ digest: Type.String(), reason: Type.String() })),
        }),
      ),
    }),
    ...errorResponses,
  },
};

/**
 * Distribution's notification envelope. Each event is checked by `auditableEvent`
 * (src/node/registry-events-routes.ts): which actions are audited and what a digest and a
 * repository look like is the registry's format, not this API's.
 */
export const registryEventsSchema = {
  summary:
    "Registry notifications (Distribution's envelope): manifest pushes and deletes join the audit chain",
  tags: ["registry"],
  security: eventsToken,
  consumes: ["application/vnd.docker.distribution.events.v1+json", "application/json"],
  body: Type.Object(
    {
      events: Type.Array(Type.Unknown(), {
        "x-message": 'the body must be a Distribution envelope {"events": [...]}',
      }),
    },
    { additionalProperties: true, "x-message": 'the body must be a Distribution envelope {"events": [...]}' },
  ),
  response: {
    200: Type.Object({ recorded: Type.Integer(), duplicates: Type.Integer(), ignored: Type.Integer() }),
    ...errorResponses,
  },
};

const upgradeShape = 'send the release tarball as application/octet-stream, or {"rollback": true}';

export const Upgrade = open({ id: Type.String(), status: Type.String() });

const UpgradeRole = open({
  role: Type.String(),
  ok: Type.Boolean(),
  ms: Type.Integer({ description: "from the new process's start until the old one had exited" }),
  ready_ms: Type.Optional(
    Type.Integer({ description: "from the new process's start until it answered ready" }),
  ),
  error: Type.Optional(Type.String()),
});

/** A platform upgrade as the store records it (src/upgrade/records.ts). */
export const UpgradeRecord = open({
  id: Type.String(),
  kind: Type.Union([Type.Literal("upgrade"), Type.Literal("rollback")]),
  status: Type.Union([Type.Literal("in_progress"), Type.Literal("completed"), Type.Literal("failed")]),
  phase: Type.String(),
  from_version: Type.String(),
  to_version: NullableString,
  upgrader_pid: Type.Union([Type.Integer(), Type.Null()]),
  upgrader_host: NullableString,
  heartbeat_at: NullableString,
  roles: Type.Array(UpgradeRole),
  error: NullableString,
  created_at: Type.String(),
  finished_at: NullableString,
});

export const upgradeSchemas = {
  start: {
    summary: "Upgrade every role of a `tabbify up` platform to a packed release, with handoffs",
    description: "The body is the release tarball (application/octet-stream), or JSON {rollback: true}.",
    tags: ["platform"],
    security: nodeKey,
    querystring: Type.Object({
      restart_runners: Type.Optional(flag("restart_runners")),
    }),
    body: {
      content: {
        "application/json": {
          schema: Type.Object(
            {
              rollback: Type.Literal(true, { "x-message": upgradeShape, "x-required": upgradeShape }),
              restart_runners: Type.Optional(
                Type.Boolean({ description: "also restart every runner with a zero-downtime swap" }),
              ),
            },
            { additionalProperties: true, "x-message": upgradeShape },
          ),
        },
        // Streamed to disk, never parsed: an empty schema checks nothing and documents the type.
        "application/octet-stream": { schema: Type.Unsafe<unknown>({ description: "the release tarball" }) },
        "application/gzip": { schema: Type.Unsafe<unknown>({ description: "the release tarball" }) },
      },
    },
    response: { 202: Upgrade, ...errorResponses },
  },
  status: {
    summary: "A platform upgrade's recorded outcome",
    tags: ["platform"],
    security: nodeKey,
    params: Type.Object({ id: Type.String({ description: "the upgrade id (a UUID)" }) }),
    response: { 200: UpgradeRecord, ...errorResponses },
  },
};
