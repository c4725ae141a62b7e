import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openStore } from "../index.js";
import { up } from "./920_app_env_orphans.js";

describe("migration 920: env rows of apps no longer in the registry", () => {
  it("removes the orphans and keeps the rows of registered apps", async () => {
    const store = await openStore({ engine: "sqlite", file: ":memory:" });
    try {
      const now = new Date().toISOString();
      const kept = "0190d8f2-0000-7000-8000-000000000001";
      const gone = "0190d8f2-0000-7000-8000-000000000002";
      await store.db
        .insertInto("apps")
        .values({ uuid: kept, name: "kept", tenant: "dev", doc: "{}", created_at: now, updated_at: now })
        .execute();
      for (const [app, environment] of [
        [kept, "prod"],
        [gone, "prod"],
        [gone, "staging"],
      ] as const) {
        await store.db
          .insertInto("app_env")
          .values({ app_uuid: app, environment, name: "DB_PASSWORD", sealed: "v1.x.y.z", updated_at: now })
          .execute();
      }
      await up(store.db);
      const rows = await store.db.selectFrom("app_env").select(["app_uuid", "environment"]).execute();
      assert.deepEqual(rows, [{ app_uuid: kept, environment: "prod" }]);
    } finally {
      await store.close();
    }
  });
});
