/**
 * `node dist/bench/apps.js`: app registry mutations per second (AppRegistry.patch: lock, read,
 * validate, write, audit append, one transaction each) and bare audit appends per second
 * (AuditLog.record), on SQLite and on a real Postgres server, each as a ratio against raw
 * autocommit inserts of an audit-sized row measured in the same run on the same disk.
 * `BENCH_APPS_OPS` sets operations per shape (default 1000); 8 apps are patched at once in the
 * parallel shape.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import { AppRegistry } from "../src/node/apps-registry.js";
import { AuditLog } from "../src/node/audit-log.js";
import { openStore, type StoreOptions } from "../src/store/index.js";
import { startPostgres } from "../test/support/postgres.js";

const OPS = Number(process.env.BENCH_APPS_OPS ?? "1000");
const PARALLEL = 8;
const row = [
  "2026-01-01T00:00:00.000Z",
  "node-key:12345678",
  "app.update",
  "app:web",
  '{"labels":{}}',
  '{"labels":{"k":"v"}}',
  "0".repeat(64),
  "f".repeat(64),
];
const anchorTable =
  "create table e (seq integer primary key, at text, actor text, action text, subject text, before text, after text, prev_hash text, event_hash text)";

const perSecond = (n: number, ms: number) => Math.round((n / ms) * 1000);

function sqliteAnchor(file: string): number {
  const db = new BetterSqlite3(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec(anchorTable);
  const insert = db.prepare("insert into e values (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  const started = performance.now();
  for (let seq = 1; seq <= OPS; seq++) insert.run(seq, ...row);
  const ms = performance.now() - started;
  db.close();
  return perSecond(OPS, ms);
}

async function postgresAnchor(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(anchorTable);
  const started = performance.now();
  for (let seq = 1; seq <= OPS; seq++) {
    await client.query("insert into e values ($1, $2, $3, $4, $5, $6, $7, $8, $9)", [seq, ...row]);
  }
  const ms = performance.now() - started;
  await client.end();
  return perSecond(OPS, ms);
}

async function measure(
  opts: StoreOptions,
): Promise<{ appends: number; mutations: number; parallel: number }> {
  const store = await openStore(opts);
  try {
    const audit = new AuditLog(store);
    const registry = new AppRegistry({ store, audit, servers: { allowed: () => new Set() } });
    let started = performance.now();
    for (let i = 0; i < OPS; i++) {
      await audit.record({ actor: "system", action: "bench.append", subject: "bench", after: { i } });
    }
    const appends = perSecond(OPS, performance.now() - started);

    const caller = { actor: "node-key:12345678" };
    for (let a = 0; a < PARALLEL; a++) await registry.put(caller, `app-${a}`, { tenant: "bench" }, false);
    started = performance.now();
    for (let i = 0; i < OPS; i++) await registry.patch(caller, "app-0", { labels: { n: String(i) } }, false);
    const mutations = perSecond(OPS, performance.now() - started);

    const each = Math.floor(OPS / PARALLEL);
    started = performance.now();
    await Promise.all(
      Array.from({ length: PARALLEL }, async (_, a) => {
        for (let i = 0; i < each; i++)
          await registry.patch(caller, `app-${a}`, { labels: { p: String(i) } }, false);
      }),
    );
    const parallel = perSecond(each * PARALLEL, performance.now() - started);
    return { appends, mutations, parallel };
  } finally {
    await store.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), "tabbify-bench-apps-"));
const pgServer = await startPostgres();
try {
  console.log(
    `apps bench: ${OPS} operations per shape; ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}`,
  );
  const rows: string[][] = [
    [
      "engine",
      "anchor (raw inserts/s)",
      "audit appends/s",
      "ratio",
      "mutations/s",
      "ratio",
      `${PARALLEL} apps at once/s`,
      "ratio",
    ],
  ];
  const add = (name: string, anchor: number, got: { appends: number; mutations: number; parallel: number }) =>
    rows.push([
      name,
      String(anchor),
      String(got.appends),
      (got.appends / anchor).toFixed(2),
      String(got.mutations),
      (got.mutations / anchor).toFixed(2),
      String(got.parallel),
      (got.parallel / anchor).toFixed(2),
    ]);
  add(
    "sqlite (WAL, FULL)",
    sqliteAnchor(join(dir, "anchor.db")),
    await measure({ engine: "sqlite", file: join(dir, "store.db") }),
  );
  add(
    "postgres 15 (local, TCP)",
    await postgresAnchor(await pgServer.createDatabase()),
    await measure({ engine: "postgres", url: await pgServer.createDatabase() }),
  );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
  console.log("ratio = operations/s ÷ the engine's raw single-row inserts/s (same run, same disk)");
} finally {
  await pgServer.stop();
  rmSync(dir, { recursive: true, force: true });
}
