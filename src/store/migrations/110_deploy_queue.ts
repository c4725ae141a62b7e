import type { Kysely } from "kysely";

/**
 * The deploy queue: rollouts waiting for an (app, environment)'s deploy lock, served oldest first;
 * and which deploy holds each lock, so a node restarting can free the locks of deploys it lost.
 */

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not today's types.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("deploy_queue")
    .addColumn("app_uuid", "text", (c) => c.notNull())
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("deploy_id", "text", (c) => c.notNull())
    .addColumn("queued_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("deploy_queue_pk", ["app_uuid", "environment", "deploy_id"])
    .execute();
  await db.schema.alterTable("deploy_locks").addColumn("deploy_id", "text").execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up().
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("deploy_locks").dropColumn("deploy_id").execute();
  await db.schema.dropTable("deploy_queue").execute();
}
