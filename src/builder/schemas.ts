import { Type } from "@sinclair/typebox";

/**
 * The builder's route schemas (src/builder/routes.ts), served on a builder-tagged supervisor.
 * The build request is checked by validateBuildRequest (validate.ts): its repo URL, path and
 * registry checks are what keep a build from reaching where it must not, and its failures carry
 * the builder's own failure body (stage, user_fault, log_tail). The body is documented here, not
 * validated twice. No `x-` keywords: these routes also mount on plain fastify apps.
 */

const BuildFailure = Type.Object(
  {
    error: Type.String(),
    code: Type.String(),
    stage: Type.String(),
    user_fault: Type.Boolean(),
    log_tail: Type.Array(Type.String()),
  },
  { additionalProperties: true },
);

export const buildSchemas = {
  build: {
    summary: "Clone a repository at a ref, build its image and push it to the registry",
    tags: ["builder"],
    security: [{ supervisorKey: [] as string[] }],
    description:
      "Body: {repo_url, ref, tenant, app_uuid, registry, image_repository?, build_kind?, stable_tag?, context?, dockerfile?, clone_token?, push_token?, manifest_toml?}. " +
      "With `accept: application/x-ndjson` the answer streams stage, log, result or error lines.",
    response: {
      200: Type.Object(
        { digest: Type.Optional(Type.String()), log_tail: Type.Optional(Type.Array(Type.String())) },
        { additionalProperties: true },
      ),
      "4xx": BuildFailure,
      "5xx": BuildFailure,
    },
  },
  progress: {
    summary: "The builds of an app this builder knows of, newest last",
    tags: ["builder"],
    security: [{ supervisorKey: [] as string[] }],
    params: Type.Object({ uuid: Type.String() }),
    response: {
      200: Type.Unknown(),
      404: Type.Object({ error: Type.String() }, { additionalProperties: true }),
    },
  },
};
