/**
 * `node dist/bench/store.js`: deploy-event appends per second through the node's store
 * (SqlDeployStore.append, one committed write each, as the executor does them), on SQLite and on
 * a real Postgres server, each as a ratio against an anchor measured in the same run on the same
 * disk: raw better-sqlite3 autocommit inserts (WAL, synchronous=FULL) and raw `pg` inserts.
 *
 * Two shapes: one deploy appending in sequence (a deploy's events are ordered), and 8 deploys
 * appending at once. `BENCH_STORE_EVENTS` sets events per shape (default 2000).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import pg from "pg";
import { SqlDeployStore } from "../src/node/deploy-store.js";
import type { DeployEvent } from "../src/pipeline/executor.js";
import { openStore, type Store, type StoreOptions } from "../src/store/index.js";
import { startPostgres } from "../test/support/postgres.js";

const EVENTS = Number(process.env.BENCH_STORE_EVENTS ?? "2000");
const PARALLEL = 8;

const event = (deploy_id: string, seq: number): DeployEvent => ({
  seq,
  ts: new Date().toISOString(),
  deploy_id,
  step: "build_and_push",
  type: "log",
  message: `#${seq} building layer sha256:${"ab".repeat(32)}`,
});

const record = (id: string) => ({
  id,
  status: "running" as const,
  request: { trigger: "api" as const, repoUrl: "https://example.com/o/r", ref: "main", tenant: "o" },
  created_at: new Date().toISOString(),
  results: [],
  events: [],
});

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const perSecond = (n: number, ms: number) => Math.round((n / ms) * 1000);

/** Raw better-sqlite3: the same row, one autocommit insert each, same pragmas as the store. */
function sqliteAnchor(file: string, synchronous: "FULL" | "NORMAL"): number {
  const db = new BetterSqlite3(file);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(
    "create table e (deploy_id text, seq integer, ts text, step text, type text, message text, data text, primary key (deploy_id, seq))",
  );
  const insert = db.prepare("insert into e values (?, ?, ?, ?, ?, ?, ?)");
  const started = performance.now();
  for (let seq = 1; seq <= EVENTS; seq++) {
    const e = event("d", seq);
    insert.run(e.deploy_id, e.seq, e.ts, e.step, e.type, e.message, null);
  }
  const ms = performance.now() - started;
  db.close();
  return perSecond(EVENTS, ms);
}

/** Raw pg: the same row, one autocommit insert each over one connection. */
async function postgresAnchor(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(
    "create table e (deploy_id text, seq integer, ts text, step text, type text, message text, data text, primary key (deploy_id, seq))",
  );
  const ms = await timed(async () => {
    for (let seq = 1; seq <= EVENTS; seq++) {
      const e = event("d", seq);
      await client.query("insert into e values ($1, $2, $3, $4, $5, $6, $7)", [
        e.deploy_id,
        e.seq,
        e.ts,
        e.step,
        e.type,
        e.message,
        null,
      ]);
    }
  });
  await client.end();
  return perSecond(EVENTS, ms);
}

async function storeAppends(opts: StoreOptions): Promise<{ sequential: number; parallel: number }> {
  const store: Store = await openStore(opts);
  try {
    const deploys = await SqlDeployStore.open(store, { owner: "bench" });
    await deploys.create(record("seq"));
    const sequentialMs = await timed(async () => {
      for (let seq = 1; seq <= EVENTS; seq++) await deploys.append(event("seq", seq));
    });
    const ids = Array.from({ length: PARALLEL }, (_, i) => `par${i}`);
    for (const id of ids) await deploys.create(record(id));
    const each = Math.floor(EVENTS / PARALLEL);
    const parallelMs = await timed(async () => {
      await Promise.all(
        ids.map(async (id) => {
          for (let seq = 1; seq <= each; seq++) await deploys.append(event(id, seq));
        }),
      );
    });
    return { sequential: perSecond(EVENTS, sequentialMs), parallel: perSecond(each * PARALLEL, parallelMs) };
  } finally {
    await store.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), "tabbify-bench-store-"));
const pgServer = await startPostgres();
try {
  console.log(
    `store bench: ${EVENTS} deploy-event appends per shape; ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}`,
  );
  const rows: string[][] = [
    [
      "engine",
      "anchor (raw inserts/s)",
      "store, 1 deploy (/s)",
      "ratio",
      `store, ${PARALLEL} deploys (/s)`,
      "ratio",
    ],
  ];
  for (const synchronous of ["FULL", "NORMAL"] as const) {
    const anchor = sqliteAnchor(join(dir, `anchor-${synchronous}.db`), synchronous);
    const got = await storeAppends({
      engine: "sqlite",
      file: join(dir, `store-${synchronous}.db`),
      synchronous,
    });
    rows.push([
      `sqlite synchronous=${synchronous}`,
      String(anchor),
      String(got.sequential),
      (got.sequential / anchor).toFixed(2),
      String(got.parallel),
      (got.parallel / anchor).toFixed(2),
    ]);
  }
  const anchor = await postgresAnchor(await pgServer.createDatabase());
  const got = await storeAppends({ engine: "postgres", url: await pgServer.createDatabase() });
  rows.push([
    "postgres 15 (local, TCP)",
    String(anchor),
    String(got.sequential),
    (got.sequential / anchor).toFixed(2),
    String(got.parallel),
    (got.parallel / anchor).toFixed(2),
  ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "));
  console.log(
    "ratio = store appends/s ÷ the engine's raw inserts/s (same run, same disk); 1.00 = no overhead",
  );
} finally {
  await pgServer.stop();
  rmSync(dir, { recursive: true, force: true });
}
