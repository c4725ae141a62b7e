import type { Migration, MigrationProvider } from "kysely";
import * as m001 from "./001_deploys.js";
import * as m002 from "./002_apps_audit.js";
import * as m100 from "./100_releases.js";
import * as m110 from "./110_deploy_queue.js";
import * as m200 from "./200_registry_events.js";
import * as m300 from "./300_webhook_bodies.js";
import * as m400 from "./400_mesh.js";
import * as m500 from "./500_app_env.js";
import * as m700 from "./700_deploy_review.js";
import * as m900 from "./900_platform_upgrades.js";
import * as m920 from "./920_app_env_orphans.js";
import * as m940 from "./940_plan_contracts.js";
import * as m960 from "./960_upgrade_heartbeat.js";

/**
 * Every migration, in the order they run. Names sort in that order too (Kysely checks). Adding a
 * migration is one file `NNN_what.ts` and one line here; a migration that shipped never changes.
 */
export const migrations: Record<string, Migration> = {
  "001_deploys": m001,
  "002_apps_audit": m002,
  "100_releases": m100,
  "110_deploy_queue": m110,
  "200_registry_events": m200,
  "300_webhook_bodies": m300,
  "400_mesh": m400,
  "500_app_env": m500,
  "700_deploy_review": m700,
  "900_platform_upgrades": m900,
  "920_app_env_orphans": m920,
  "940_plan_contracts": m940,
  "960_upgrade_heartbeat": m960,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
