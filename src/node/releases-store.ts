import { createHash } from "node:crypto";
import { v7 as uuidV7 } from "uuid";
import { TabbifyError } from "../core/errors.js";
import type { Store, StoreTransaction } from "../store/index.js";
import { isUniqueViolation } from "../store/index.js";
import type { AuditLog } from "./audit-log.js";

/**
 * Releases in the node's store. A release is immutable: one per (app, digest), never updated. Which
 * release an environment runs is a history of `release_runs` rows (the newest is current), so a
 * rollback knows what ran before. Every new release and every run is an audit event.
 */

export { DEFAULT_ENVIRONMENT } from "../pipeline/plan.js";
export const RELEASE_MANIFEST_MEDIA_TYPE = "application/vnd.tabbify.release.manifest.v1+json";

export type ReleaseSource = { repo_url: string; commit_sha: string } | { artifact_version: string };

export interface Release {
  id: string;
  app: string;
  digest: string;
  source: ReleaseSource;
  manifest: Record<string, unknown>;
  created_at: string;
  created_by: string;
}

export interface ReleaseListing extends Release {
  /** Environments whose current release this is. */
  environments: string[];
}

export interface NewRelease {
  app: string;
  digest: string;
  source: ReleaseSource;
  /** The manifest without its `release` member: the id is filled in here. */
  manifest: Record<string, unknown>;
  created_by: string;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export class ReleaseStore {
  readonly #store: Store;
  readonly #audit: AuditLog;
  readonly #now: () => Date;

  constructor(store: Store, audit: AuditLog, now: () => Date = () => new Date()) {
    this.#store = store;
    this.#audit = audit;
    this.#now = now;
  }

  /**
   * Records a release, or returns the one the app already has for that digest (the same image or
   * tree twice is one release). `created` says which.
   */
  async record(input: NewRelease): Promise<{ release: Release; created: boolean }> {
    if (!DIGEST.test(input.digest)) throw new TabbifyError("BAD_REQUEST", "digest must be sha256:<64 hex>");
    const existing = await this.byDigest(input.app, input.digest);
    if (existing) return { release: existing, created: false };
    const id = uuidV7();
    const release: Release = {
      id,
      app: input.app,
      digest: input.digest,
      source: input.source,
      manifest: { ...input.manifest, release: id },
      created_at: this.#now().toISOString(),
      created_by: input.created_by,
    };
    try {
      await this.#store.transaction(async (trx) => {
        await trx
          .insertInto("releases")
          .values({
            id,
            app_uuid: release.app,
            digest: release.digest,
            source: JSON.stringify(release.source),
            manifest: JSON.stringify(release.manifest),
            created_at: release.created_at,
            created_by: release.created_by,
          })
          .execute();
        await this.#audit.append(trx, {
          actor: release.created_by,
          action: "release.create",
          subject: `app:${release.app}`,
          after: { release: id, digest: release.digest, source: release.source },
        });
      });
    } catch (err) {
      // Another writer recorded the same digest first: theirs is the release.
      if (!isUniqueViolation(err)) throw err;
      const raced = await this.byDigest(input.app, input.digest);
      if (!raced) throw err;
      return { release: raced, created: false };
    }
    return { release, created: true };
  }

  async byDigest(app: string, digest: string): Promise<Release | undefined> {
    const row = await this.#store.db
      .selectFrom("releases")
      .selectAll()
      .where("app_uuid", "=", app)
      .where("digest", "=", digest)
      .executeTakeFirst();
    return row ? fromRow(row) : undefined;
  }

  /** By id or digest; throws RELEASE_NOT_FOUND. */
  async find(app: string, ref: string): Promise<Release> {
    const query = this.#store.db.selectFrom("releases").selectAll().where("app_uuid", "=", app);
    const row = await (DIGEST.test(ref)
      ? query.where("digest", "=", ref)
      : query.where("id", "=", ref)
    ).executeTakeFirst();
    if (!row) throw new TabbifyError("RELEASE_NOT_FOUND", `app has no release ${ref}`);
    return fromRow(row);
  }

  /** Newest first, each with the environments whose current release it is. */
  async list(app: string, limit = 100): Promise<ReleaseListing[]> {
    const rows = await this.#store.db
      .selectFrom("releases")
      .selectAll()
      .where("app_uuid", "=", app)
      .orderBy("id", "desc")
      .limit(limit)
      .execute();
    const current = await this.currentByEnvironment(app);
    return rows.map((row) => {
      const release = fromRow(row);
      const environments = [...current].filter(([, id]) => id === release.id).map(([env]) => env);
      return { ...release, environments: environments.sort() };
    });
  }

  /** environment → id of the release it runs now. */
  async currentByEnvironment(app: string): Promise<Map<string, string>> {
    const rows = await this.#store.db
      .selectFrom("release_runs")
      .select(["environment", "release_id", "started_at"])
      .where("app_uuid", "=", app)
      .orderBy("started_at", "asc")
      .execute();
    const current = new Map<string, string>();
    for (const row of rows) current.set(row.environment, row.release_id);
    return current;
  }

  /** The release an environment runs now, and the last different one it ran before. */
  async history(app: string, environment: string): Promise<{ current?: Release; previous?: Release }> {
    const rows = await this.#store.db
      .selectFrom("release_runs")
      .select(["release_id"])
      .where("app_uuid", "=", app)
      .where("environment", "=", environment)
      .orderBy("started_at", "desc")
      .limit(200)
      .execute();
    const currentId = rows[0]?.release_id;
    const previousId = rows.find((r) => r.release_id !== currentId)?.release_id;
    const out: { current?: Release; previous?: Release } = {};
    if (currentId) out.current = await this.find(app, currentId);
    if (previousId) out.previous = await this.find(app, previousId);
    return out;
  }

  /** Whether `environment` ever ran `release`. */
  async ranIn(release: Release, environment: string): Promise<boolean> {
    const row = await this.#store.db
      .selectFrom("release_runs")
      .select("release_id")
      .where("app_uuid", "=", release.app)
      .where("environment", "=", environment)
      .where("release_id", "=", release.id)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Records that `environment` now runs `release`, with the audit event `action` by `actor`. */
  async markRunning(
    release: Release,
    environment: string,
    actor: string,
    action: "release.deploy" | "release.rollback" | "release.promote",
    detail: Record<string, unknown> = {},
  ): Promise<void> {
    await this.#store.transaction(async (trx: StoreTransaction) => {
      await trx
        .insertInto("release_runs")
        .values({
          app_uuid: release.app,
          environment,
          release_id: release.id,
          started_at: this.#now().toISOString(),
          deploy_id: typeof detail.deploy_id === "string" ? detail.deploy_id : null,
        })
        .execute();
      await this.#audit.append(trx, {
        actor,
        action,
        subject: `app:${release.app}`,
        after: { environment, release: release.id, digest: release.digest, ...detail },
      });
    });
  }
}

function fromRow(row: {
  id: string;
  app_uuid: string;
  digest: string;
  source: string;
  manifest: string;
  created_at: string;
  created_by: string;
}): Release {
  return {
    id: row.id,
    app: row.app_uuid,
    digest: row.digest,
    source: JSON.parse(row.source) as ReleaseSource,
    manifest: JSON.parse(row.manifest) as Record<string, unknown>,
    created_at: row.created_at,
    created_by: row.created_by,
  };
}

/**
 * The content digest of a pushed artifact version: sha256 over its manifest.toml's digest and each
 * file's path and digest in path order, so the same tree always gives the same digest whatever
 * order its files were listed in.
 */
export function artifactContentDigest(
  manifestToml: string,
  files: { path: string; digest: string }[],
): string {
  const hash = createHash("sha256");
  hash.update(`manifest.toml\0${createHash("sha256").update(manifestToml).digest("hex")}\n`);
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const file = sorted[i]!;
    if (i > 0 && sorted[i - 1]!.path === file.path) {
      throw new TabbifyError("BAD_REQUEST", `files: ${file.path} is listed twice`);
    }
    if (!DIGEST.test(file.digest)) throw new TabbifyError("BAD_REQUEST", `files: ${file.path}: bad digest`);
    hash.update(`${file.path}\0${file.digest}\n`);
  }
  return `sha256:${hash.digest("hex")}`;
}
