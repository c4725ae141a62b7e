/**
 * The platform upgrade on a node whose store is Postgres (`tabbify up` with TABBIFY_DATABASE_URL):
 * the transient upgrader records every step and the outcome in that database, not in a SQLite
 * file, and an upgrader killed mid-node-handoff leaves a row the next node closes as failed.
 * No apps here: test/upgrade.test.ts covers the workloads; this one covers the store.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { freshDatabaseUrl } from "./support/postgres.js";
import { type RunningProcess, repoRoot, run, sleep, tempDir } from "./support/tools.js";
import { freeUpPorts, spawnUp, type UpPorts } from "./support/up-stack.js";
import { releaseTarball, rolePids } from "./support/upgrade-stack.js";

const roles = ["node", "registry", "auth", "supervisor"] as const;

describe("tabbify upgrade with the node's store on Postgres", { concurrency: false }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let data: string;
  let ports: UpPorts;
  let up: RunningProcess;
  let key: string;
  let databaseUrl: string;
  let db: pg.Client;
  let nextVersion: string;
  let tarball: string;

  const versions = async () =>
    Object.fromEntries(
      await Promise.all(
        roles.map(async (role) => {
          const res = await fetch(`http://127.0.0.1:${ports[role]}/api/version`);
          return [role, ((await res.json()) as { version: string }).version] as const;
        }),
      ),
    );
  const row = async (id: string) =>
    (await db.query("SELECT * FROM platform_upgrades WHERE id = $1", [id])).rows[0] as
      | {
          status: string;
          phase: string;
          upgrader_host: string | null;
          heartbeat_at: string | null;
          roles: string;
        }
      | undefined;
  const startUp = async () => {
    up = spawnUp(data, ports, { TABBIFY_DATABASE_URL: databaseUrl });
    await up.waitForLine(/Tabbify is up/, 90_000);
  };

  before(async () => {
    dir = await tempDir("tabbify-upgrade-pg");
    data = join(dir.path, "data");
    const base = (JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string })
      .version;
    nextVersion = `${base}-pg1`;
    tarball = await releaseTarball(dir.path, nextVersion);
    databaseUrl = await freshDatabaseUrl();
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    ports = await freeUpPorts();
    await startUp();
    key = (await readFile(join(data, "node.key"), "utf8")).trim();
  });

  after(async () => {
    await db?.end();
    await up?.stop(20_000);
    await dir?.remove();
  });

  it("records the upgrade in Postgres: completed, every role, the upgrader's host", async () => {
    const result = await run(
      process.execPath,
      [
        join(repoRoot, "dist", "src", "main", "tabbify.js"),
        "upgrade",
        "--to",
        tarball,
        "--node",
        `http://127.0.0.1:${ports.node}`,
        "--key-file",
        join(data, "node.key"),
      ],
      { timeoutMs: 600_000 },
    );
    const id = /\(([0-9a-f-]{36})\)/.exec(result.stdout)?.[1];
    assert.ok(id, result.stdout + result.stderr);
    assert.deepEqual(await versions(), Object.fromEntries(roles.map((r) => [r, nextVersion])));
    const recorded = await row(id);
    assert.equal(recorded?.status, "completed", JSON.stringify(recorded));
    assert.equal(recorded.upgrader_host, hostname());
    assert.ok(recorded.heartbeat_at, "the upgrader's heartbeat");
    assert.deepEqual(
      (JSON.parse(recorded.roles) as { role: string; ok: boolean }[]).map((r) => [r.role, r.ok]),
      ["supervisor", "registry", "auth", "node"].map((r) => [r, true]),
    );
  });

  it("an upgrader killed mid-node-handoff: Postgres says failed after up restarts, one node serves", async () => {
    const auth = { authorization: `Bearer ${key}` };
    const started = await fetch(`http://127.0.0.1:${ports.node}/api/v1/platform/upgrade`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ rollback: true }),
    });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    const deadline = Date.now() + 180_000;
    for (;;) {
      assert.ok(Date.now() < deadline, "the rollback never reached the node");
      const now = (
        await db.query("SELECT phase, upgrader_pid, status FROM platform_upgrades WHERE id = $1", [id])
      ).rows[0] as { phase: string; upgrader_pid: number | null; status: string };
      assert.equal(now.status, "in_progress", JSON.stringify(now));
      if (now.phase === "node" && now.upgrader_pid) {
        process.kill(now.upgrader_pid, "SIGKILL");
        break;
      }
      await sleep(25);
    }
    await up.waitForLine(new RegExp(`upgrade ${id}: upgrader exited`), 120_000);
    await up.stop(20_000);
    await startUp();
    const res = await fetch(`http://127.0.0.1:${ports.node}/api/v1/platform/upgrades/${id}`, {
      headers: auth,
    });
    assert.equal(((await res.json()) as { status: string }).status, "failed");
    assert.equal((await row(id))?.status, "failed", "closed in Postgres");
    assert.equal(rolePids("node", data).length, 1, "exactly one node");
    // The rollback never committed: every role is back on the release it ran before.
    assert.deepEqual(await versions(), Object.fromEntries(roles.map((r) => [r, nextVersion])));
  });
});
