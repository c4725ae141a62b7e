import type { Migration, MigrationProvider } from "kysely";
import * as m001 from "./001_deploys.js";

/**
 * Every migration, in the order they run. Names sort in that order too (Kysely checks). Adding a
 * migration is one file `NNN_what.ts` and one line here; a migration that shipped never changes.
 */
export const migrations: Record<string, Migration> = {
  "001_deploys": m001,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
