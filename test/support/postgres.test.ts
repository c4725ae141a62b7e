import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import pg from "pg";
import { repoRoot } from "./tools.js";

test("freshDatabaseUrl: a real server with a password, gone with its temp dir when the process exits", async () => {
  const harness = join(repoRoot, "dist", "test", "support", "postgres.js");
  const script = `
    const { freshDatabaseUrl } = await import(${JSON.stringify(harness)});
    const a = await freshDatabaseUrl();
    const b = await freshDatabaseUrl();
    const pg = (await import("pg")).default;
    const client = new pg.Client({ connectionString: a });
    await client.connect();
    const { rows } = await client.query("select current_database() as db, current_user as who, current_setting('data_directory') as data");
    await client.end();
    const ps = (await import("node:child_process")).spawnSync("ps", ["-o", "user=", "-C", "postgres"], { encoding: "utf8" });
    console.log(JSON.stringify({ a, b, rows, users: ps.stdout.trim().split("\\n") }));
    process.exit(0);
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(child.status, 0, child.stderr);
  const out = JSON.parse(child.stdout.trim().split("\n").at(-1) as string) as {
    a: string;
    b: string;
    rows: { db: string; who: string; data: string }[];
    users: string[];
  };
  const a = new URL(out.a);
  const b = new URL(out.b);
  assert.notEqual(a.pathname, b.pathname, "each call is a new database");
  assert.equal(a.port, b.port, "on one server");
  assert.ok(a.password.length >= 16, "TCP connections need a password");
  assert.equal(out.rows[0]?.db, a.pathname.slice(1));
  if (process.getuid?.() === 0)
    assert.ok(out.users.includes("postgres"), `server runs unprivileged: ${out.users}`);

  // The process has exited: the server is stopped and its data gone.
  const client = new pg.Client({ connectionString: out.a, connectionTimeoutMillis: 3_000 });
  await assert.rejects(client.connect(), "the server is stopped");
  await client.end().catch(() => {});
  const data = out.rows[0]?.data ?? "";
  assert.match(data, /tabbify-pg-/);
  assert.ok(!existsSync(data), `${data} is removed`);
});
