import type { Kysely } from "kysely";

/** The webhook replay guard's digests (they lived in `webhook-bodies.log` before). */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("webhook_bodies")
    .addColumn("digest", "text", (c) => c.primaryKey())
    .addColumn("accepted_at", "text", (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("webhook_bodies").execute();
}
