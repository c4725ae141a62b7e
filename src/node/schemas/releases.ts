import { Type } from "@sinclair/typebox";
import { AppParams, errorResponses, NullableString, nodeKeyOrTenant, open } from "./common.js";

/** Schemas of the release history routes (src/node/releases-node.ts). */

export const Release = open({
  id: Type.String(),
  app: Type.String(),
  digest: Type.String(),
  source: open({}),
  manifest: open({}),
  created_at: Type.String(),
  created_by: Type.String(),
});

/** A pushed release, with how its rollout to the app's first environment went. */
const PushedRelease = open({
  ...Release.properties,
  rollout: Type.Optional(
    open(
      { environment: Type.String(), state: Type.String() },
      "the rollout to the app's first environment, or why there was none",
    ),
  ),
});

const RolloutTarget = open({ supervisor: Type.String(), success: Type.Boolean() });

const tag = ["releases"];

export const listReleasesSchema = {
  summary: "The app's releases, newest first, each with the environments it is current in",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  response: {
    200: Type.Object({
      app: Type.String(),
      uuid: Type.String(),
      releases: Type.Array(open({ ...Release.properties, environments: Type.Array(Type.String()) })),
    }),
    ...errorResponses,
  },
};

const shape = "the body must be {version, manifest_toml, files: [{path, digest}]}";

export const RecordReleaseBody = Type.Object(
  {
    version: Type.String({ minLength: 1, "x-message": shape, "x-required": shape }),
    manifest_toml: Type.String({ "x-message": shape, "x-required": shape }),
    files: Type.Array(
      Type.Object(
        { path: Type.String(), digest: Type.String() },
        { additionalProperties: true, "x-message": "files: each must be {path, digest}" },
      ),
      { "x-message": shape, "x-required": shape },
    ),
  },
  { additionalProperties: true, "x-message": shape },
);

export const recordReleaseSchema = {
  summary: "Record a pushed artifact version as a release (201 new, 200 known)",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  body: RecordReleaseBody,
  response: { 200: PushedRelease, 201: PushedRelease, ...errorResponses },
};

export const RollbackBody = Type.Union([
  Type.Object(
    {
      env: Type.Optional(Type.String({ minLength: 1, "x-message": "env must be a name" })),
      to: Type.Optional(Type.String({ minLength: 1, "x-message": "to must be a release id or digest" })),
      migrate: Type.Optional(
        Type.Boolean({
          "x-message": "migrate must be true or false",
          description: "Run the release's [deploy] migrate first (a rollback skips it otherwise)",
        }),
      ),
    },
    { additionalProperties: true },
  ),
  Type.Null(),
]);

export const rollbackSchema = {
  summary: "Run the environment's previous release again (or `to`), on every target",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  body: RollbackBody,
  response: {
    200: open({
      app: Type.String(),
      environment: Type.String(),
      release: Release,
      from: NullableString,
      targets: Type.Array(RolloutTarget),
      duration_ms: Type.Integer(),
    }),
    ...errorResponses,
  },
};

const promoteShape = "the body must be {from, to, release?} with two different environments";

export const PromoteBody = Type.Object(
  {
    from: Type.String({ "x-message": promoteShape, "x-required": promoteShape }),
    to: Type.String({ "x-message": promoteShape, "x-required": promoteShape }),
    release: Type.Optional(
      Type.String({ minLength: 1, "x-message": "release must be a release id or digest" }),
    ),
  },
  { additionalProperties: true, "x-message": promoteShape },
);

export const promoteSchema = {
  summary: "Run what `from` verifiably ran in `to`: the same digest, pinned",
  tags: tag,
  security: nodeKeyOrTenant,
  params: AppParams,
  body: PromoteBody,
  response: {
    200: open({
      app: Type.String(),
      environment: Type.String(),
      uuid: Type.String(),
      from: Type.String(),
      release: Release,
      targets: Type.Array(RolloutTarget),
      duration_ms: Type.Integer(),
    }),
    ...errorResponses,
  },
};
