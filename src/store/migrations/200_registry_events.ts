import type { Kysely } from "kysely";

/** Ids of registry notification events already in the audit chain: a redelivered batch adds nothing. */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("registry_events")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("received_at", "text", (c) => c.notNull())
    .addColumn("audit_seq", "integer", (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("registry_events").execute();
}
