import type { Kysely } from "kysely";

/** The mesh coordinator's sticky address book and its join-token signing key. */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("mesh_peers")
    .addColumn("wg_public_key", "text", (c) => c.primaryKey())
    .addColumn("peer_id", "text", (c) => c.notNull().unique())
    .addColumn("ula", "text", (c) => c.notNull().unique())
    .addColumn("network", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("mesh_networks")
    .addColumn("network", "text", (c) => c.primaryKey())
    .addColumn("next_idx", "integer", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("mesh_secrets")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("value", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("mesh_secrets").execute();
  await db.schema.dropTable("mesh_networks").execute();
  await db.schema.dropTable("mesh_peers").execute();
}
