import type { Kysely } from "kysely";

/**
 * Env rows of apps that already left the registry: before removing an app took its `app_env` rows
 * with it, they stayed behind, and an app created again under that uuid would have got them.
 */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.deleteFrom("app_env").where("app_uuid", "not in", db.selectFrom("apps").select("uuid")).execute();
}

/** Nothing to put back: the removed rows belonged to apps that no longer exist. */
export async function down(): Promise<void> {}
