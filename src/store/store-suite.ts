import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { migrations } from "./migrations/index.js";
import { isUniqueViolation, openStore, type Store, type StoreOptions } from "./store.js";

/**
 * The one store suite, run against every engine: `storeSuite("sqlite", () => …)` in
 * store.sqlite.test.ts and `storeSuite("postgres", …)` in test/store-postgres.test.ts. `fresh`
 * returns the options of an empty store (a new file, a new database); the suite opens, closes and
 * reopens it as it needs.
 */
export function storeSuite(engine: string, fresh: () => Promise<StoreOptions>): void {
  const withStore = async (fn: (store: Store, opts: StoreOptions) => Promise<void>) => {
    const opts = await fresh();
    const store = await openStore(opts);
    try {
      await fn(store, opts);
    } finally {
      await store.close();
    }
  };

  const deploy = (id: string, created_at = new Date().toISOString()) => ({
    id,
    status: "running",
    created_at,
    finished_at: null,
    app_uuid: null,
    image_ref: null,
    digest: null,
    request: JSON.stringify({ repoUrl: "https://example.com/o/r", ref: "main" }),
    results: "[]",
    error: null,
    owner: "suite",
  });

  test(`${engine}: opening applies every migration once; reopening applies none`, async () => {
    const opts = await fresh();
    const first = await openStore(opts);
    assert.equal(first.engine, opts.engine);
    const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
      first.db,
    );
    assert.deepEqual(
      applied.rows.map((r) => r.name),
      Object.keys(migrations),
    );
    await first.db.insertInto("deploys").values(deploy("d1")).execute();
    await first.close();
    const again = await openStore(opts);
    try {
      const rows = await again.db.selectFrom("deploys").select("id").execute();
      assert.deepEqual(rows, [{ id: "d1" }], "data survives a reopen");
      const count = await sql<{ n: number | string }>`select count(*) as n from kysely_migration`.execute(
        again.db,
      );
      assert.equal(Number(count.rows[0]?.n), Object.keys(migrations).length);
    } finally {
      await again.close();
    }
  });

  test(`${engine}: JSON as text and ISO timestamps round-trip unchanged`, async () => {
    await withStore(async (store) => {
      const at = "2026-12-05T20:53:31.123Z";
      const data = { nested: { list: [1, "two", null], unicode: "é✓" } };
      await store.db.insertInto("deploys").values(deploy("d1", at)).execute();
      await store.db
        .insertInto("deploy_events")
        .values({
          deploy_id: "d1",
          seq: 1,
          ts: at,
          step: "build",
          type: "log",
          message: "x",
          data: JSON.stringify(data),
        })
        .execute();
      const row = await store.db.selectFrom("deploy_events").selectAll().executeTakeFirstOrThrow();
      assert.equal(row.ts, at);
      assert.equal(typeof row.seq, "number");
      assert.deepEqual(JSON.parse(row.data ?? "null"), data);
    });
  });

  test(`${engine}: a transaction that throws leaves nothing behind`, async () => {
    await withStore(async (store) => {
      await assert.rejects(
        store.transaction(async (trx) => {
          await trx.insertInto("deploys").values(deploy("d1")).execute();
          await trx
            .insertInto("deploy_events")
            .values({
              deploy_id: "d1",
              seq: 1,
              ts: "t",
              step: "deploy",
              type: "log",
              message: null,
              data: null,
            })
            .execute();
          throw new Error("stop here");
        }),
        /stop here/,
      );
      assert.equal((await store.db.selectFrom("deploys").select("id").execute()).length, 0);
      assert.equal((await store.db.selectFrom("deploy_events").select("seq").execute()).length, 0);
    });
  });

  test(`${engine}: a transaction's result is returned and its rows are visible after commit`, async () => {
    await withStore(async (store) => {
      const n = await store.transaction(async (trx) => {
        await trx.insertInto("deploys").values(deploy("d1")).execute();
        await trx.insertInto("deploys").values(deploy("d2")).execute();
        return 2;
      });
      assert.equal(n, 2);
      assert.equal((await store.db.selectFrom("deploys").select("id").execute()).length, 2);
    });
  });

  test(`${engine}: duplicate keys are recognised as unique violations`, async () => {
    await withStore(async (store) => {
      await store.db.insertInto("deploys").values(deploy("d1")).execute();
      const err = await store.db
        .insertInto("deploys")
        .values(deploy("d1"))
        .execute()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err, "the second insert fails");
      assert.ok(isUniqueViolation(err), `unique violation recognised: ${String(err)}`);
      assert.ok(!isUniqueViolation(new Error("other")));
    });
  });

  test(`${engine}: foreign keys hold (an event needs its deploy; deleting a deploy drops its events)`, async () => {
    await withStore(async (store) => {
      await assert.rejects(
        store.db
          .insertInto("deploy_events")
          .values({
            deploy_id: "nope",
            seq: 1,
            ts: "t",
            step: "deploy",
            type: "log",
            message: null,
            data: null,
          })
          .execute(),
      );
      await store.db.insertInto("deploys").values(deploy("d1")).execute();
      await store.db
        .insertInto("deploy_events")
        .values({ deploy_id: "d1", seq: 1, ts: "t", step: "deploy", type: "log", message: null, data: null })
        .execute();
      await store.db.deleteFrom("deploys").where("id", "=", "d1").execute();
      assert.equal((await store.db.selectFrom("deploy_events").select("seq").execute()).length, 0);
    });
  });

  test(`${engine}: serialize() makes read-then-write transactions on one key run one after another`, async () => {
    await withStore(async (store) => {
      // 20 concurrent "append the next number" transactions: each reads the highest seq and
      // writes the next. Without serialization two would read the same max and one would fail.
      await store.db.insertInto("deploys").values(deploy("chain")).execute();
      await Promise.all(
        Array.from({ length: 20 }, () =>
          store.transaction(async (trx) => {
            await store.serialize(trx, "chain");
            const last = await trx
              .selectFrom("deploy_events")
              .select((eb) => eb.fn.max("seq").as("max"))
              .where("deploy_id", "=", "chain")
              .executeTakeFirst();
            await trx
              .insertInto("deploy_events")
              .values({
                deploy_id: "chain",
                seq: Number(last?.max ?? 0) + 1,
                ts: new Date().toISOString(),
                step: "deploy",
                type: "log",
                message: null,
                data: null,
              })
              .execute();
          }),
        ),
      );
      const seqs = await store.db
        .selectFrom("deploy_events")
        .select("seq")
        .where("deploy_id", "=", "chain")
        .orderBy("seq")
        .execute();
      assert.deepEqual(
        seqs.map((r) => r.seq),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
    });
  });

  test(`${engine}: describe() never shows a password`, async () => {
    await withStore(async (store, opts) => {
      const where = store.describe();
      if (opts.engine === "postgres") {
        const password = new URL(opts.url).password;
        if (password !== "") assert.ok(!where.includes(password), where);
        assert.match(where, /^postgres:\/\//);
      } else {
        assert.equal(where, `sqlite:${opts.file}`);
      }
    });
  });
}
