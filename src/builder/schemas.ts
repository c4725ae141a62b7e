import { type Static, Type } from "@sinclair/typebox";
import { TENANT_SCHEMA } from "../auth/namespace.js";
import { GIT_REF_PATTERN } from "../core/git-ref.js";

/**
 * The builder's route schemas (src/builder/routes.ts), served on a builder-tagged supervisor:
 * the one source of the build request's validation, of the answers' shapes, of the OpenAPI
 * document and of the client's types (HttpSupervisorClient.build in src/pipeline/clients.ts).
 *
 * A schema failure is answered in the builder's own failure body ({@link BuildFailure}, code
 * BUILD_REQUEST_INVALID, stage `validate`) by the route's error handler, with the sentence each
 * property's `x-message` gives. What a schema cannot say stays in code (build-paths.ts): the
 * repository a build pushes to against registry/tenant/app_uuid, the context and Dockerfile
 * resolved inside the clone, and the repo_url's host (git-clone.ts's `checkRepo`).
 *
 * The routes compile with the house's Ajv options (`schemaAjv` in src/core/api-docs.ts), which
 * know the `x-` keywords.
 */

/** `host[:port]` or `[v6]:port`, as docker reads a registry in an image reference. */
const REGISTRY_PATTERN = "^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?|\\[[0-9a-fA-F:.]+\\])(?::\\d{1,5})?$";
/** A docker tag that is not a commit sha (40 or 64 hex): the sha tag is the build's own. */
const STABLE_TAG_PATTERN = "^(?![0-9a-fA-F]{40}$)(?![0-9a-fA-F]{64}$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
const UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/** A non-empty string field; `pattern` adds the sentence for a value of the wrong shape. */
function text(name: string, shape?: { pattern: string; maxLength?: number; why: string }) {
  const wrongType = `${name} must be a non-empty string`;
  if (!shape) return Type.String({ minLength: 1, "x-message": wrongType });
  return Type.String({
    minLength: 1,
    pattern: shape.pattern,
    ...(shape.maxLength !== undefined ? { maxLength: shape.maxLength } : {}),
    "x-message": { default: wrongType, pattern: shape.why, maxLength: shape.why },
  });
}

/** An optional field: absent and `null` both mean "not given". */
const optional = <T extends ReturnType<typeof text>>(schema: T) =>
  Type.Optional(Type.Union([schema, Type.Null()]));

const registry = () =>
  text("registry", { pattern: REGISTRY_PATTERN, why: "registry must be host[:port] without scheme or path" });

/** `POST /v1/build`. Unknown fields are ignored. */
export const BuildRequestBody = Type.Object(
  {
    repo_url: text("repo_url"),
    ref: text("ref", { pattern: GIT_REF_PATTERN, why: "ref must be a commit sha, branch or tag name" }),
    tenant: text("tenant", { ...TENANT_SCHEMA, why: "tenant is not a valid registry path component" }),
    app_uuid: text("app_uuid", { pattern: UUID_PATTERN, why: "app_uuid must be a UUID" }),
    registry: optional(registry()),
    /** The seed's name for `registry`, taken when `registry` is absent. */
    registry_ula: optional(registry()),
    image_repository: optional(text("image_repository")),
    build_kind: Type.Optional(
      Type.Union([Type.Literal("docker"), Type.Null()], {
        "x-message": "build_kind must be docker (the only kind supported)",
      }),
    ),
    stable_tag: optional(
      text("stable_tag", {
        pattern: STABLE_TAG_PATTERN,
        why: "stable_tag must be a docker tag that is not a commit sha",
      }),
    ),
    context: optional(text("context")),
    dockerfile: optional(text("dockerfile")),
    clone_token: optional(text("clone_token")),
    clone_username: optional(
      text("clone_username", {
        pattern: "^[^\\s:]{1,200}$",
        why: "clone_username must be 1-200 characters without spaces or colons",
      }),
    ),
    push_token: optional(text("push_token")),
    manifest_toml: optional(text("manifest_toml")),
  },
  { additionalProperties: true, "x-message": "the build request must be a JSON object" },
);
export type BuildRequestBody = Static<typeof BuildRequestBody>;

const FailedStage = Type.Union(
  [Type.Literal("validate"), Type.Literal("clone"), Type.Literal("build"), Type.Literal("push")],
  { description: "validate: refused before anything ran" },
);

/** Every build failure, as the answer's body and as the stream's closing `error` line. */
export const BuildFailure = Type.Object(
  {
    error: Type.String(),
    code: Type.String({
      description:
        "BUILD_REQUEST_INVALID 400, BUILD_CONTEXT_INVALID 422, BUILD_CLONE_FAILED 502, BUILD_FAILED 422 (the Dockerfile's) or 500, BUILD_PUSH_FAILED 502, BUILD_CANCELLED 503",
    }),
    stage: FailedStage,
    user_fault: Type.Boolean(),
    log_tail: Type.Array(Type.String(), { description: "The last lines of output, redacted" }),
  },
  { additionalProperties: true },
);
export type BuildFailure = Static<typeof BuildFailure>;

const pushed = {
  reff: Type.String({ description: "The pushed reference (the seed's spelling of image_ref)" }),
  image_ref: Type.String({ description: "<registry>/<tenant>/<app_uuid>:<commit sha>" }),
  digest: Type.String({ description: "The manifest digest the registry stored" }),
  commit_sha: Type.String(),
};

/** The plain JSON answer of a build that pushed. */
export const BuildAnswer = Type.Object(
  { ...pushed, log_tail: Type.Array(Type.String()) },
  { additionalProperties: true },
);
export type BuildAnswer = Static<typeof BuildAnswer>;

/** One line of the `application/x-ndjson` answer. */
export const BuildStreamLine = Type.Union([
  Type.Object({
    type: Type.Literal("stage"),
    stage: Type.String({ description: "queued, clone, build or push; repeated as a keep-alive" }),
  }),
  Type.Object({ type: Type.Literal("log"), line: Type.String() }),
  Type.Object({ type: Type.Literal("result"), ...pushed }),
  Type.Object(
    { type: Type.Literal("error"), status: Type.Integer(), ...BuildFailure.properties },
    { additionalProperties: true },
  ),
]);
export type BuildStreamLine = Static<typeof BuildStreamLine>;

export const BuildProgressAnswer = Type.Object(
  {
    build_id: Type.String(),
    app_uuid: Type.String(),
    stage: Type.String({ description: "queued, clone, build, push, done or failed" }),
    ref: Type.String(),
    commit_sha: Type.Optional(Type.String()),
    image_ref: Type.Optional(Type.String()),
    digest: Type.Optional(Type.String()),
    error: Type.Optional(
      Type.Object(
        { code: Type.String(), message: Type.String(), stage: FailedStage, user_fault: Type.Boolean() },
        { additionalProperties: true },
      ),
    ),
    queued_at: Type.String(),
    started_at: Type.Optional(Type.String()),
    finished_at: Type.Optional(Type.String()),
    log_tail: Type.Array(Type.String()),
  },
  { additionalProperties: true },
);

const supervisorKey = [{ supervisorKey: [] as string[] }];

/** The supervisor's own refusal of a caller without its key (src/supervisor/api-auth.ts). */
const CallerRefused = Type.Object(
  { error: Type.String(), code: Type.String() },
  { additionalProperties: true },
);

export const buildSchemas = {
  build: {
    summary: "Clone a repository at a ref, build its image and push it to the registry",
    tags: ["builder"],
    security: supervisorKey,
    description:
      "With `accept: application/x-ndjson` the answer is 200 at once and streams one JSON object per line (stage, log, then result or error); a request refused before anything ran keeps its status in both modes. A client that hangs up cancels its build.",
    body: BuildRequestBody,
    response: {
      200: {
        description: "The pushed image (JSON), or the build's stream (NDJSON)",
        content: {
          "application/json": { schema: BuildAnswer },
          "application/x-ndjson": { schema: BuildStreamLine },
        },
      },
      401: CallerRefused,
      403: CallerRefused,
      "4xx": BuildFailure,
      "5xx": BuildFailure,
    },
  },
  progress: {
    summary: "The app's running build, else its newest one",
    tags: ["builder"],
    security: supervisorKey,
    params: Type.Object({ uuid: Type.String() }),
    response: {
      200: BuildProgressAnswer,
      404: Type.Object({ error: Type.String() }, { additionalProperties: true }),
    },
  },
};
