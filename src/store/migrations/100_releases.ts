import type { Kysely } from "kysely";

/** Releases, which release each (app, environment) runs over time, and the deploy lock. */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("releases")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("app_uuid", "text", (c) => c.notNull())
    .addColumn("digest", "text", (c) => c.notNull())
    .addColumn("source", "text", (c) => c.notNull())
    .addColumn("manifest", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addUniqueConstraint("releases_app_digest", ["app_uuid", "digest"])
    .execute();

  await db.schema
    .createTable("release_runs")
    .addColumn("app_uuid", "text", (c) => c.notNull())
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("release_id", "text", (c) => c.notNull())
    .addColumn("started_at", "text", (c) => c.notNull())
    .addColumn("deploy_id", "text")
    .execute();
  await db.schema
    .createIndex("release_runs_app_env")
    .on("release_runs")
    .columns(["app_uuid", "environment", "started_at"])
    .execute();

  await db.schema
    .createTable("deploy_locks")
    .addColumn("app_uuid", "text", (c) => c.notNull())
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("holder", "text", (c) => c.notNull())
    .addColumn("acquired_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("deploy_locks_pk", ["app_uuid", "environment"])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("deploy_locks").execute();
  await db.schema.dropTable("release_runs").execute();
  await db.schema.dropTable("releases").execute();
}
