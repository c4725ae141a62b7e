import { Type } from "@sinclair/typebox";
import type { DescribeOptions } from "../core/api-docs.js";
import { runtimeKinds } from "../runtimes/runtime.js";

/**
 * The supervisor API's schemas (src/supervisor/api.ts). Errors are `{error, code}` plus safe
 * detail fields. Start and deploy bodies are workload specs: their types are checked here, and
 * what a schema cannot say (absolute paths, runtime-specific fields, unknown runtimes answering
 * RUNTIME_UNKNOWN) by specFromBody (spec.ts) after.
 */

const supervisorKey = [{ supervisorKey: [] as string[] }];

export const supervisorApiDocument = (version: string): DescribeOptions => ({
  title: "Tabbify supervisor API",
  version,
  description:
    "One host's runtime plane: starts, stops and deploys app workloads and serves their logs. " +
    "Only the node (and an operator) hold the supervisor API key; `/health`, `/api/*`, " +
    "`/openapi.json` and `/docs` are open.",
  security: [
    { name: "supervisorKey", description: "The fleet's supervisor API key (TABBIFY_SUPERVISOR_KEY)" },
  ],
});

export const SupervisorError = Type.Object(
  { error: Type.String(), code: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const errors = { "4xx": SupervisorError, "5xx": SupervisorError } as const;

const UuidParams = Type.Object({ uuid: Type.String({ description: "The app's uuid" }) });

export const AppRow = Type.Object(
  {
    uuid: Type.String(),
    app_ula: Type.String(),
    state: Type.String({ description: "running or stopped" }),
    bound_addr: Type.Union([Type.String(), Type.Null()]),
    restart_status: Type.Optional(Type.String({ description: "running, backoff or crashloop" })),
    restart_count: Type.Optional(Type.Integer()),
    next_retry_at: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    last_exit_at: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    crash_looped: Type.Optional(Type.Boolean()),
    runtime: Type.Optional(Type.String()),
    pid: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    workload_pid: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    app_health: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    app_health_reason: Type.Optional(Type.String()),
    version: Type.Union([Type.String(), Type.Null()], {
      description: "the app's: the running workload's code digest (sha256:…), never Tabbify's release",
    }),
    artifact_version: Type.Union([Type.String(), Type.Null()], {
      description: "the app's: the artifact-store version (v<N>) it runs",
    }),
    restarts: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    adoption_error: Type.Optional(Type.String()),
    hop: Type.Optional(
      Type.String({
        description: "kernel (nftables DNAT to the workload) or userspace (the runner forwards)",
      }),
    ),
    hop_reason: Type.Optional(Type.String({ description: "why the userspace hop carries the app" })),
    egress: Type.Optional(
      Type.String({
        description:
          "an egress app's: proxy+kernel (the kernel refuses connections around its proxy) or proxy (only the proxy enforces the allow-list)",
      }),
    ),
    egress_reason: Type.Optional(Type.String({ description: "why the kernel does not confine the app" })),
    present: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

export const StartResult = Type.Object(
  {
    state: Type.Literal("running"),
    app_ula: Type.String(),
    bound_addr: Type.String(),
    version: Type.Union([Type.String(), Type.Null()], {
      description: "the app's: the running workload's code digest (sha256:…), never Tabbify's release",
    }),
    artifact_version: Type.Union([Type.String(), Type.Null()], {
      description: "the app's: the artifact-store version (v<N>) it runs",
    }),
    workload_pid: Type.Union([Type.Integer(), Type.Null()]),
    swapped: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

const specFields = {
  runtime: Type.String({
    minLength: 1,
    description: `One of ${runtimeKinds.join(", ")}`,
    "x-message": `runtime is required (one of ${runtimeKinds.join(", ")})`,
    "x-required": `runtime is required (one of ${runtimeKinds.join(", ")})`,
  }),
  artifact_dir: Type.Optional(Type.String({ description: "Absolute path on the supervisor's host" })),
  command: Type.Optional(
    Type.Array(Type.String(), { minItems: 1, "x-message": "command must be a non-empty list of strings" }),
  ),
  image: Type.Optional(Type.String()),
  image_archive: Type.Optional(Type.String({ description: "Absolute path of a docker-archive tarball" })),
  entry: Type.Optional(Type.String()),
  env: Type.Optional(
    Type.Record(Type.String(), Type.String({ "x-message": "env {field} must be a string" }), {
      "x-message": "env must be a map of strings",
    }),
  ),
  egress: Type.Optional(
    Type.Object(
      { allow: Type.Array(Type.String(), { maxItems: 256 }) },
      {
        description:
          "process: run behind the runner's egress proxy that lets through only these hosts (host or host:port)",
        additionalProperties: true,
      },
    ),
  ),
  limits: Type.Optional(
    Type.Object(
      {
        timeout_ms: Type.Optional(
          Type.Number({ exclusiveMinimum: 0, "x-message": "limits.timeout_ms must be a positive number" }),
        ),
        memory_mb: Type.Optional(
          Type.Number({ exclusiveMinimum: 0, "x-message": "limits.memory_mb must be a positive number" }),
        ),
      },
      { additionalProperties: true, "x-message": "limits must be an object" },
    ),
  ),
};

/** `POST /v1/apps/:uuid/start`: nothing (run what is stored), `{refresh}`, or a spec. */
export const StartBody = Type.Union(
  [
    Type.Object(
      {
        refresh: Type.Optional(Type.Boolean({ "x-message": "refresh must be true or false" })),
        ...Object.fromEntries(Object.entries(specFields).map(([k, v]) => [k, Type.Optional(v)])),
      },
      { additionalProperties: true, "x-message": "the body must be a JSON object" },
    ),
    Type.Null(),
  ],
  { "x-message": "the body must be a JSON object" },
);

export const DeployBody = Type.Object(
  {
    ...specFields,
    // An artifact_version deploy names no runtime (the stored manifest does); specFromBody
    // requires it of every other deploy.
    runtime: Type.Optional(specFields.runtime),
    ref: Type.Optional(Type.String({ description: "The image reference to pull" })),
    artifact_version: Type.Optional(
      Type.String({ description: "v<N>: roll the artifact store's version N (a pushed release)" }),
    ),
    artifact_app: Type.Optional(
      Type.String({ description: "The app uuid the artifact store holds artifact_version under" }),
    ),
    environment: Type.Optional(
      Type.String({ description: "The environment this target runs; prod takes only pinned refs" }),
    ),
    probes: Type.Optional(
      Type.Object(
        {
          healthz: Type.Optional(Type.String()),
          ready: Type.Optional(Type.String()),
          version: Type.Optional(Type.String()),
          expect: Type.Optional(Type.Array(Type.String())),
        },
        {
          additionalProperties: true,
          description: "The app's probes, checked on the new workload before it takes requests",
        },
      ),
    ),
    registry_token: Type.Optional(
      Type.String({
        description: "Pull credentials for the node's registry (a bearer token); never stored or logged",
      }),
    ),
    handler_artifact: Type.Optional(
      Type.Object(
        {
          registry_url: Type.String(),
          repository: Type.String(),
          digest: Type.String(),
        },
        {
          description:
            "A handler bundle in the registry (pulled by digest with registry_token; it becomes artifact_dir and command)",
          additionalProperties: true,
        },
      ),
    ),
  },
  { additionalProperties: true, "x-message": "the body must be a JSON object" },
);

export const supervisorSchemas = {
  health: {
    summary: "Liveness, identity and capabilities (unauthenticated)",
    tags: ["supervisor"],
    response: {
      200: Type.Object(
        {
          status: Type.String(),
          supervisor_id: Type.String(),
          ula: Type.String(),
          tabbify_version: Type.String({ description: "the Tabbify release this supervisor runs" }),
          version: Type.String({ description: "the same as tabbify_version (older name)" }),
          firecracker: Type.Boolean(),
          docker: Type.Boolean(),
          tags: Type.Array(Type.String()),
          warm_spares: Type.Unknown(),
        },
        { additionalProperties: true },
      ),
    },
  },
  about: {
    summary: "Version, roster id and mesh status",
    tags: ["supervisor"],
    security: supervisorKey,
    response: {
      200: Type.Object({
        tabbify_version: Type.String({ description: "the Tabbify release this supervisor runs" }),
        version: Type.String({ description: "the same as tabbify_version (older name)" }),
        peer_id: Type.String(),
        mesh_status: Type.String({ description: "joined or no_mesh" }),
        uptime_secs: Type.Integer(),
      }),
      ...errors,
    },
  },
  list: {
    summary: "Every app with a runner on this host",
    tags: ["apps"],
    security: supervisorKey,
    response: { 200: Type.Object({ apps: Type.Array(AppRow) }), ...errors },
  },
  describe: {
    summary: "One app: its runner's state, or what the artifact store would start",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    response: { 200: AppRow, ...errors },
  },
  start: {
    summary: "Start the app: the artifact store's version, or the spec in the body",
    tags: ["apps"],
    security: supervisorKey,
    "x-error-code": "SPEC_INVALID",
    params: UuidParams,
    body: StartBody,
    response: { 200: StartResult, ...errors },
  },
  deploy: {
    summary: "Run a new version of the app, swapping it in once healthy",
    tags: ["apps"],
    security: supervisorKey,
    "x-error-code": "SPEC_INVALID",
    params: UuidParams,
    body: Type.Union([DeployBody, Type.Null()], { "x-message": "the body must be a JSON object" }),
    response: { 200: StartResult, ...errors },
  },
  migrate: {
    summary:
      "Run the release's migration once to completion (same image or artifact, env, user and data), switching nothing",
    tags: ["apps"],
    security: supervisorKey,
    "x-error-code": "SPEC_INVALID",
    params: UuidParams,
    body: Type.Intersect(
      [
        DeployBody,
        Type.Object({
          migrate: Type.Array(Type.String(), {
            minItems: 1,
            maxItems: 64,
            description: 'The command run in place of the app\'s, e.g. ["node", "migrate.js"]',
          }),
          timeout_sec: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 3600, description: "Killed after this long (default 600)" }),
          ),
        }),
      ],
      { "x-message": "the body must be a deploy body with migrate: [command, args…]" },
    ),
    response: {
      200: Type.Object({
        exit_code: Type.Union([Type.Integer(), Type.Null()]),
        signal: Type.Union([Type.String(), Type.Null()]),
        timed_out: Type.Boolean(),
        duration_ms: Type.Integer(),
        log_tail: Type.Array(Type.String(), {
          description: "The last lines of output, with the app's env values cut out",
        }),
        limit_reason: Type.Optional(
          Type.Literal("oom", {
            description: "Set when the app's memory_mb limit, not the command, ended it",
          }),
        ),
      }),
      ...errors,
    },
  },
  stop: {
    summary: "Stop the app's runner",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    response: { 200: Type.Object({ state: Type.Literal("stopped") }), ...errors },
  },
  restart: {
    summary: "Swap the running app onto a fresh workload of the release it runs (409 when stopped)",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    response: { 200: StartResult, ...errors },
  },
  restartRunners: {
    summary:
      "Hand every app to a new runner of this supervisor's release, one zero-downtime handoff per app (runner pids change, workloads are replaced after the new ones are healthy)",
    tags: ["apps"],
    security: supervisorKey,
    response: {
      200: Type.Object({
        restarted: Type.Array(
          Type.Object({
            uuid: Type.String(),
            pid_before: Type.Integer(),
            pid: Type.Integer(),
            workload_pid: Type.Union([Type.Integer(), Type.Null()]),
          }),
        ),
        skipped: Type.Array(Type.Object({ uuid: Type.String(), reason: Type.String() })),
        failed: Type.Array(Type.Object({ uuid: Type.String(), error: Type.String() })),
      }),
      ...errors,
    },
  },
  purge: {
    summary: "Stop the app and remove its records and artifacts here",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    response: { 200: Type.Object({ state: Type.Literal("purged"), uuid: Type.String() }), ...errors },
  },
  reset: {
    summary: "Clear the app's crash-loop state so it is retried now",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    response: { 200: AppRow, ...errors },
  },
  logs: {
    summary: "The app's runner log (text/plain): the last `tail` lines, then more with `follow`",
    tags: ["apps"],
    security: supervisorKey,
    params: UuidParams,
    querystring: Type.Object(
      {
        tail: Type.Optional(
          Type.String({
            description: "Lines from the end, up to 10000 (default 100; with since, every line since)",
          }),
        ),
        follow: Type.Optional(Type.String({ description: "1 to keep streaming" })),
        since: Type.Optional(
          Type.String({
            description:
              "only lines since then: a duration back from now (90s, 10m, 2h, 7d) or an RFC 3339 time",
          }),
        ),
        timestamps: Type.Optional(Type.String({ description: "1 to keep each line's stamp" })),
      },
      { additionalProperties: true },
    ),
    produces: ["text/plain"],
    response: { 200: Type.String({ description: "log lines" }), ...errors },
  },
};
