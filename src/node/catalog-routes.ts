import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { PROOF_MEDIA_TYPE } from "../contract/oci.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import type { RegistryAccess } from "../pipeline/deps.js";
import { RegistryClient } from "../registry/client.js";
import { signatureMediaTypes } from "../registry/signatures.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import { callerFirst } from "./caller-first.js";
import { RELEASE_MANIFEST_MEDIA_TYPE } from "./releases-store.js";
import { catalogSchemas } from "./schemas/catalog.js";

/**
 * What the dashboard's Proofs and Registry pages read, scoped to the caller's tenant (the node
 * key sees every tenant's):
 *
 *   GET /v1/projects                  {projects:[{name, proofs, last_ts}]}: handler projects with proof rows
 *   GET /api/v1/registry/catalog      {repositories:[…]}: each repository the node pushed for the
 *        caller's apps and handler projects (`<tenant>/<app uuid>`), its tags and their digests, and
 *        for each digest its referrers (release manifests, proofs, signatures), read from the
 *        registry with a pull token of that repository alone
 */

const MAX_REPOSITORIES = 50;
const MAX_TAGS = 50;
const OCI_ACCEPT = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

export type ReferrerKind = "release" | "proof" | "signature" | "other";

const kindOf = (artifactType: string | undefined): ReferrerKind =>
  artifactType === RELEASE_MANIFEST_MEDIA_TYPE
    ? "release"
    : artifactType === PROOF_MEDIA_TYPE
      ? "proof"
      : artifactType === signatureMediaTypes.artifact
        ? "signature"
        : "other";

export interface CatalogRoutesOptions {
  store: Store;
  callers: CallerResolver;
  registry?: RegistryAccess | undefined;
  /** Default `http://<registry host>`. */
  registryUrl?: string;
}

interface RepoRef {
  tenant: string;
  uuid: string;
  name: string;
  kind: "app" | "handler";
}

export function registerCatalogRoutes(app: FastifyInstance, opts: CatalogRoutesOptions): void {
  const who = callerFirst((req) => opts.callers.resolve(req.headers.authorization));
  // The schemas type each handler's answer (these routes take no params, query or body).
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();

  typed.get("/v1/projects", { schema: catalogSchemas.projects, onRequest: who.onRequest }, async (req) => {
    const scope = who.caller(req).tenant ?? "admin";
    const rows = await opts.store.db
      .selectFrom("proof_rows")
      .select(["project", (eb) => eb.fn.countAll<number>().as("n"), (eb) => eb.fn.max("ts").as("last")])
      .where("scope", "=", scope)
      .groupBy("project")
      .orderBy("project")
      .execute();
    return {
      projects: rows.map((r) => ({ name: r.project, proofs: Number(r.n), last_ts: Number(r.last) })),
    };
  });

  typed.get(
    "/api/v1/registry/catalog",
    { schema: catalogSchemas.catalog, onRequest: who.onRequest },
    async (req) => {
      const registry = opts.registry;
      if (!registry) throw new TabbifyError("REGISTRY_REQUIRED", "this node has no platform registry");
      const tenant = who.caller(req).tenant;
      const base = (opts.registryUrl ?? `http://${registry.host}`).replace(/\/+$/, "");
      const repos = (await repositoriesOf(opts.store, tenant)).slice(0, MAX_REPOSITORIES);
      const repositories = [];
      for (const ref of repos) repositories.push(await readRepository(base, registry, ref));
      return { repositories };
    },
  );
}

/** The caller's apps (the registry's `apps`) and handler projects (their deploy sessions). */
async function repositoriesOf(store: Store, tenant: string | undefined): Promise<RepoRef[]> {
  let apps = store.db.selectFrom("apps").select(["uuid", "name", "tenant"]);
  if (tenant !== undefined) apps = apps.where("tenant", "=", tenant);
  let handlers = store.db.selectFrom("deploy_sessions").select(["app_uuid", "project", "scope"]).distinct();
  if (tenant !== undefined) handlers = handlers.where("scope", "=", tenant.toLowerCase());
  const seen = new Map<string, RepoRef>();
  for (const a of await apps.orderBy("name").execute()) {
    seen.set(`${a.tenant.toLowerCase()}/${a.uuid}`, {
      tenant: a.tenant,
      uuid: a.uuid,
      name: a.name,
      kind: "app",
    });
  }
  for (const h of await handlers.orderBy("project").execute()) {
    seen.set(`${h.scope}/${h.app_uuid}`, {
      tenant: h.scope,
      uuid: h.app_uuid,
      name: h.project,
      kind: "handler",
    });
  }
  return [...seen.values()];
}

/** A refused read shows as nothing; a registry that cannot be reached fails the repository. */
function refusedAsNothing(err: unknown): undefined {
  if (isTabbifyError(err, "REGISTRY_UNREACHABLE")) throw err;
  return undefined;
}

async function readRepository(base: string, registry: RegistryAccess, ref: RepoRef) {
  const repository = `${ref.tenant.toLowerCase()}/${ref.uuid.toLowerCase()}`;
  const out = { repository, tenant: ref.tenant, name: ref.name, kind: ref.kind };
  try {
    const token = registry.pullToken ? await registry.pullToken(ref.tenant, ref.uuid) : undefined;
    const repo = new RegistryClient({ url: base, token, timeoutMs: 15_000 }).repository(repository);
    const names = ((await repo.tags()) ?? []).slice(0, MAX_TAGS);
    if (names.length === 0) return { ...out, tags: [], manifests: [] };
    const tags: { tag: string; digest: string | null }[] = [];
    for (const tag of names) {
      const head = await repo.describeManifest(tag, OCI_ACCEPT).catch(refusedAsNothing);
      tags.push({ tag, digest: head && head.digest !== tag ? head.digest : null });
    }
    const byDigest = new Map<string, string[]>();
    for (const t of tags) if (t.digest) byDigest.set(t.digest, [...(byDigest.get(t.digest) ?? []), t.tag]);
    const manifests = [];
    for (const [digest, digestTags] of byDigest) {
      const index = (await repo.referrers(digest).catch(refusedAsNothing)) ?? {};
      const referrers = (index.manifests ?? []).map((m) => ({
        digest: m.digest,
        artifactType: m.artifactType ?? null,
        kind: kindOf(m.artifactType),
      }));
      manifests.push({ digest, tags: digestTags, referrers });
    }
    return { ...out, tags, manifests };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return {
      ...out,
      tags: [],
      manifests: [],
      error: `the registry could not be read (${why.slice(0, 200)})`,
    };
  }
}
