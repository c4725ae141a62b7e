import type { Kysely } from "kysely";

/** Deploy records, their events, webhook deliveries, and the store's own facts. */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("store_meta")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("value", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("deploys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("finished_at", "text")
    .addColumn("app_uuid", "text")
    .addColumn("image_ref", "text")
    .addColumn("digest", "text")
    .addColumn("request", "text", (c) => c.notNull())
    .addColumn("results", "text", (c) => c.notNull())
    .addColumn("error", "text")
    .addColumn("owner", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("deploys_created_at").on("deploys").column("created_at").execute();
  await db.schema.createIndex("deploys_status").on("deploys").column("status").execute();

  await db.schema
    .createTable("deploy_events")
    .addColumn("deploy_id", "text", (c) => c.notNull().references("deploys.id").onDelete("cascade"))
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("ts", "text", (c) => c.notNull())
    .addColumn("step", "text", (c) => c.notNull())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("message", "text")
    .addColumn("data", "text")
    .addPrimaryKeyConstraint("deploy_events_pk", ["deploy_id", "seq"])
    .execute();

  await db.schema
    .createTable("webhook_deliveries")
    .addColumn("delivery_id", "text", (c) => c.primaryKey())
    .addColumn("claimed_at", "text")
    .addColumn("note", "text")
    .addColumn("noted_at", "text")
    .execute();
  await db.schema
    .createIndex("webhook_deliveries_claimed_at")
    .on("webhook_deliveries")
    .column("claimed_at")
    .execute();
  await db.schema
    .createIndex("webhook_deliveries_noted_at")
    .on("webhook_deliveries")
    .column("noted_at")
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ["webhook_deliveries", "deploy_events", "deploys", "store_meta"]) {
    await db.schema.dropTable(table).execute();
  }
}
