import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sql } from "kysely";
import { openStore } from "./store.js";
import { storeSuite } from "./store-suite.js";

const root = mkdtempSync(join(tmpdir(), "tabbify-store-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

storeSuite("sqlite", async () => ({ engine: "sqlite", file: join(root, `s${++n}`, "node.db") }));

test("sqlite: the file is 0600 in a 0700 dir, in WAL mode with synchronous=FULL", async () => {
  const file = join(root, "modes", "node.db");
  const store = await openStore({ engine: "sqlite", file });
  try {
    await store.db.selectFrom("deploys").select("id").execute();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, "modes")).mode & 0o777, 0o700);
    const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(store.db);
    assert.equal(mode.rows[0]?.journal_mode, "wal");
    const sync = await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db);
    assert.equal(sync.rows[0]?.synchronous, 2, "2 is FULL");
    assert.equal(statSync(`${file}-wal`).mode & 0o777, 0o600, "the WAL takes the file's mode");
  } finally {
    await store.close();
  }
});
