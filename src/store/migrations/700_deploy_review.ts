import type { Kysely } from "kysely";

/**
 * Handler deploys with a contract: review plans, grants, per-tenant review policies, deploy
 * sessions (with their push-scoped upload credential, kept as a digest) and proof rows.
 */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("deploy_plans")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("region", "text", (c) => c.notNull())
    .addColumn("baseline_sha", "text")
    .addColumn("proposed_sha", "text", (c) => c.notNull())
    .addColumn("reasons", "text", (c) => c.notNull())
    .addColumn("covered", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("mode", "text")
    .addColumn("grant_id", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .addColumn("decided_at", "text")
    .addColumn("decided_by", "text")
    .execute();
  await db.schema
    .createTable("deploy_grants")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("source_plan_id", "text", (c) => c.notNull())
    .addColumn("reasons", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text")
    .addColumn("revoked_at", "text")
    .execute();
  await db.schema
    .createIndex("deploy_grants_project")
    .on("deploy_grants")
    .columns(["scope", "project"])
    .execute();
  await db.schema
    .createTable("deploy_review_policies")
    .addColumn("scope", "text", (c) => c.primaryKey())
    .addColumn("risky", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("deploy_sessions")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("region", "text", (c) => c.notNull())
    .addColumn("app_uuid", "text", (c) => c.notNull())
    .addColumn("contract_sha", "text", (c) => c.notNull())
    .addColumn("contract", "text", (c) => c.notNull())
    .addColumn("plan_id", "text")
    .addColumn("grant_ids", "text", (c) => c.notNull())
    .addColumn("token_sha256", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("detail", "text")
    .addColumn("digest", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("deploy_sessions_project")
    .on("deploy_sessions")
    .columns(["scope", "project", "created_at"])
    .execute();
  await db.schema
    .createTable("proof_rows")
    .addColumn("session_id", "text", (c) => c.primaryKey())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("ts", "bigint", (c) => c.notNull())
    .addColumn("row", "text", (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  for (const t of [
    "proof_rows",
    "deploy_sessions",
    "deploy_review_policies",
    "deploy_grants",
    "deploy_plans",
  ])
    await db.schema.dropTable(t).execute();
}
