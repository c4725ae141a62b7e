import { Type } from "@sinclair/typebox";
import { errorResponses, nodeKeyOrTenant } from "./common.js";

/** Schemas of the proofs and registry views (src/node/catalog-routes.ts). */

const Referrer = Type.Object({
  digest: Type.String(),
  artifactType: Type.Union([Type.String(), Type.Null()]),
  kind: Type.String({ description: "release, proof, signature or other" }),
});
const Repository = Type.Object({
  repository: Type.String({ description: "`<tenant>/<app uuid>` in the platform registry" }),
  tenant: Type.String(),
  name: Type.String({ description: "the app's name, or the handler project's" }),
  kind: Type.String({ description: "app or handler" }),
  tags: Type.Array(Type.Object({ tag: Type.String(), digest: Type.Union([Type.String(), Type.Null()]) })),
  manifests: Type.Array(
    Type.Object({ digest: Type.String(), tags: Type.Array(Type.String()), referrers: Type.Array(Referrer) }),
  ),
  error: Type.Optional(Type.String({ description: "why this repository could not be read" })),
});

export const catalogSchemas = {
  projects: {
    summary: "Your handler projects that have proof rows",
    tags: ["proofs"],
    security: nodeKeyOrTenant,
    response: {
      200: Type.Object({
        projects: Type.Array(
          Type.Object({ name: Type.String(), proofs: Type.Number(), last_ts: Type.Number() }),
        ),
      }),
      ...errorResponses,
    },
  },
  catalog: {
    summary: "Your repositories in the platform registry: tags, digests and referrers",
    tags: ["registry"],
    security: nodeKeyOrTenant,
    response: { 200: Type.Object({ repositories: Type.Array(Repository) }), ...errorResponses },
  },
};
