import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { type RunningNode, startNode } from "../src/node/index.js";
import { call, fetchAudit, firstBrokenSeq } from "./support/apps-api.js";
import { type PostgresServer, startPostgres } from "./support/postgres.js";
import { spawnTabbify } from "./support/tools.js";

/** `tabbify audit verify --database URL` on a chain a node wrote to Postgres, intact then tampered. */

const KEY = "apps-audit-pg-node-key";
let server: PostgresServer;
let node: RunningNode | undefined;
const dir = mkdtempSync(join(tmpdir(), "tabbify-apps-audit-pg-"));

before(async () => {
  server = await startPostgres();
});
after(async () => {
  await node?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The URL carries a password, so it goes by env, as the CLI demands. */
async function verify(url: string): Promise<{ code: number | string; out: string }> {
  const proc = spawnTabbify(["audit", "verify"], { TABBIFY_DATABASE_URL: url });
  const code = await proc.exited;
  return { code, out: proc.output() };
}

test("audit verify --database: intact chain exits 0; an edited row exits 1 naming its seq", async () => {
  const url = await server.createDatabase();
  node = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: KEY,
    dataDir: join(dir, "node"),
    databaseUrl: url,
  });
  for (const name of ["one", "two", "three"]) {
    const res = await call(node.url, "PUT", `/api/v1/apps/${name}`, { token: KEY, body: { tenant: "acme" } });
    assert.equal(res.status, 201, res.text);
  }
  await call(node.url, "PATCH", "/api/v1/apps/two", { token: KEY, body: { branch: "dev" } });
  await node.close();
  node = undefined;

  const intact = await verify(url);
  assert.equal(intact.code, 0, intact.out);
  assert.match(intact.out, /^audit chain intact: 4 events, head seq 4 [0-9a-f]{64}$/m);
  assert.ok(!intact.out.includes(new URL(url).password), "the database password is never printed");

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("delete from audit_events where seq = 2");
  } finally {
    await client.end();
  }
  const broken = await verify(url);
  assert.equal(broken.code, 1, broken.out);
  assert.match(broken.out, /^audit chain broken at seq 2: seq 2 is missing/m);

  const onArgv = spawnTabbify(["audit", "verify", "--database", url]);
  assert.equal(await onArgv.exited, 1);
  assert.match(onArgv.output(), /password, which ps would show/);
  assert.ok(!onArgv.output().includes(new URL(url).password));
});

test("two nodes sharing one Postgres append to one unforked chain under concurrent writes", async () => {
  const url = await server.createDatabase();
  const a = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: KEY,
    dataDir: join(dir, "a"),
    databaseUrl: url,
  });
  const b = await startNode({
    port: 0,
    httpLogLevel: "silent",
    nodeKey: KEY,
    dataDir: join(dir, "b"),
    databaseUrl: url,
  });
  try {
    const writes = Array.from({ length: 40 }, (_, i) =>
      call(i % 2 === 0 ? a.url : b.url, "PUT", `/api/v1/apps/shared-${i}`, {
        token: KEY,
        body: { tenant: "acme" },
      }),
    );
    for (const res of await Promise.all(writes)) assert.equal(res.status, 201, res.text);
    // Both nodes patch one app at once: the advisory lock orders them, nothing is lost.
    const patches = Array.from({ length: 10 }, (_, i) =>
      call(i % 2 === 0 ? a.url : b.url, "PATCH", "/api/v1/apps/shared-0", {
        token: KEY,
        body: { labels: { [`k${i}`]: "v" } },
      }),
    );
    for (const res of await Promise.all(patches)) assert.equal(res.status, 200, res.text);
    const events = await fetchAudit(b.url, KEY, 100);
    assert.equal(events.length, 50);
    assert.equal(firstBrokenSeq(events), undefined);
    const app = await call(a.url, "GET", "/api/v1/apps/shared-0", { token: KEY });
    assert.equal(Object.keys(app.body.labels as object).length, 10);
  } finally {
    await a.close();
    await b.close();
  }
});
