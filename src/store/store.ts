import { closeSync, openSync } from "node:fs";
import { chmod, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Transaction } from "kysely";
import { TabbifyError } from "../core/errors.js";
import { migrationProvider } from "./migrations/index.js";
import type { Database } from "./schema.js";

/**
 * The node's store: one Kysely instance over SQLite (embedded, a file under the data dir) or
 * Postgres (shared by several nodes), the same migrations and the same queries on both.
 */

export type StoreEngine = "sqlite" | "postgres";

export type StoreOptions =
  | {
      engine: "sqlite";
      /** Created 0600 (its directory 0700) when missing. `:memory:` for throwaway stores. */
      file: string;
      /**
       * SQLite's `synchronous` in WAL mode. FULL (default) fsyncs the WAL at every commit, so a
       * commit survives power loss too; NORMAL survives kill -9 but not power loss.
       */
      synchronous?: "FULL" | "NORMAL";
    }
  | {
      engine: "postgres";
      /** `postgres://user:password@host:port/db`; never logged (see {@link Store.describe}). */
      url: string;
      /** Pool size. Default 10. */
      maxConnections?: number;
    };

export type StoreTransaction = Transaction<Database>;

export interface Store {
  readonly engine: StoreEngine;
  /** Typed queries on both engines. Writes that span rows go through {@link transaction}. */
  readonly db: Kysely<Database>;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. On
   * SQLite transactions run one at a time (one connection); on Postgres at READ COMMITTED, so
   * read-then-write sequences that must not interleave take {@link serialize} first.
   */
  transaction<T>(fn: (trx: StoreTransaction) => Promise<T>): Promise<T>;
  /**
   * Within a transaction: waits until no other transaction holds `key`, then holds it until this
   * one ends (Postgres: a transaction-scoped advisory lock; SQLite: already true, one writer).
   * For chains such as the audit log, where each row depends on the one before.
   */
  serialize(trx: StoreTransaction, key: string): Promise<void>;
  /** Where the store is, safe to log: the file, or the URL without its password. */
  describe(): string;
  close(): Promise<void>;
}

/** Opens the store and brings its schema up to date (every migration not yet applied). */
export async function openStore(opts: StoreOptions): Promise<Store> {
  const store = opts.engine === "sqlite" ? await openSqlite(opts) : await openPostgres(opts);
  try {
    await migrate(store.db);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

async function migrate(db: Kysely<Database>): Promise<void> {
  // Components own number ranges (releases 100–149, mesh 400…), so a store that already ran a
  // later range still takes a new migration numbered below it.
  const migrator = new Migrator({ db, provider: migrationProvider, allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    const why = error instanceof Error ? error.message : String(error);
    throw new TabbifyError("STORE_MIGRATION_FAILED", `store migration ${failed} failed: ${why}`);
  }
}

async function openSqlite(opts: Extract<StoreOptions, { engine: "sqlite" }>): Promise<Store> {
  if (opts.file !== ":memory:") {
    const dir = dirname(opts.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    // Created here with 0600 so SQLite never makes it world-readable; its -wal and -shm files
    // take the database file's mode.
    closeSync(openSync(opts.file, "a", 0o600));
    await chmod(opts.file, 0o600);
  }
  // Each engine's driver is loaded only when it is used: a node on SQLite never loads pg.
  const { default: BetterSqlite3 } = await import("better-sqlite3");
  const sqlite = new BetterSqlite3(opts.file);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma(`synchronous = ${opts.synchronous ?? "FULL"}`);
  sqlite.pragma("foreign_keys = ON");
  // Another process (e.g. `tabbify audit verify --data`) may read meanwhile.
  sqlite.pragma("busy_timeout = 5000");
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  return {
    engine: "sqlite",
    db,
    transaction: (fn) => db.transaction().execute(fn),
    serialize: async () => {},
    describe: () => `sqlite:${opts.file}`,
    close: () => db.destroy(),
  };
}

async function openPostgres(opts: Extract<StoreOptions, { engine: "postgres" }>): Promise<Store> {
  let where: string;
  try {
    const url = new URL(opts.url);
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") throw new Error("scheme");
    url.password = "";
    url.username = "";
    where = `postgres://${url.host}${url.pathname}`;
  } catch {
    throw new TabbifyError("USAGE", "the database URL must look like postgres://user:password@host:port/db");
  }
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.maxConnections ?? 10 });
  // An idle client losing its server (restart, network) must not crash the node.
  pool.on("error", () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    engine: "postgres",
    db,
    transaction: (fn) => db.transaction().execute(fn),
    serialize: async (trx, key) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(trx);
    },
    describe: () => where,
    close: () => db.destroy(),
  };
}

/** True for a primary-key or unique-constraint violation, on either engine. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE";
}
