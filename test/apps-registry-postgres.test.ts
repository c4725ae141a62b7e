import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import pg from "pg";
import { registryApiSuite } from "./apps-registry-suite.js";
import { type PostgresServer, startPostgres } from "./support/postgres.js";

let server: PostgresServer;
const root = mkdtempSync(join(tmpdir(), "tabbify-apps-pg-"));
const urls = new Map<string, string>();
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});
let n = 0;

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

registryApiSuite({
  name: "postgres",
  nodeOptions: async () => {
    const dataDir = join(root, `node${++n}`);
    const databaseUrl = await server.createDatabase();
    urls.set(dataDir, databaseUrl);
    return { dataDir, databaseUrl };
  },
  // Every row of every table, in a stable order.
  fingerprint: async (_node, { dataDir }) =>
    withClient(urls.get(dataDir) as string, async (client) => {
      const hash = createHash("sha256");
      const tables = await client.query<{ tablename: string }>(
        "select tablename from pg_tables where schemaname = 'public' order by tablename",
      );
      for (const { tablename } of tables.rows) {
        const rows = await client.query(`select * from "${tablename}"`);
        const lines = rows.rows.map((r) => JSON.stringify(r)).sort();
        hash.update(`${tablename}\n${lines.join("\n")}\n`);
      }
      return hash.digest("hex");
    }),
  holdStoreLock: async ({ databaseUrl }, name) => {
    const client = new pg.Client({ connectionString: databaseUrl as string });
    await client.connect();
    await client.query("select pg_advisory_lock(hashtextextended($1, 0))", [`app:${name}`]);
    return async () => {
      await client.query("select pg_advisory_unlock(hashtextextended($1, 0))", [`app:${name}`]);
      await client.end();
    };
  },
});
