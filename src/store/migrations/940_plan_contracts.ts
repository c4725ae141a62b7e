import type { Kysely } from "kysely";

/**
 * A review plan keeps the two contracts it compares (canonical JSON), so its review page can show
 * them, not only their digests. Plans made before this have neither (null).
 */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("deploy_plans").addColumn("baseline_contract", "text").execute();
  await db.schema.alterTable("deploy_plans").addColumn("proposed_contract", "text").execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("deploy_plans").dropColumn("proposed_contract").execute();
  await db.schema.alterTable("deploy_plans").dropColumn("baseline_contract").execute();
}
