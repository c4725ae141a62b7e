import type { Kysely } from "kysely";

/**
 * Where a platform upgrade's upgrader runs and when it last said so: a node sharing the store
 * from another host cannot ask its /proc whether that pid lives, so it reads the heartbeat.
 */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("platform_upgrades").addColumn("upgrader_host", "text").execute();
  await db.schema.alterTable("platform_upgrades").addColumn("heartbeat_at", "text").execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("platform_upgrades").dropColumn("heartbeat_at").execute();
  await db.schema.alterTable("platform_upgrades").dropColumn("upgrader_host").execute();
}
