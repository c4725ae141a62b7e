/**
 * Attacks on the node's store: hostile ids in URLs and webhook headers stay data (no SQL
 * injection), the store's files are the node's alone, and a Postgres password never shows in
 * argv, logs or errors.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/core/log.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { openStore } from "../../src/store/index.js";
import { type PostgresServer, startPostgres } from "../support/postgres.js";
import { freePort, spawnTabbify, tempDir } from "../support/tools.js";

const NODE_KEY = "store-security-node-key";
const SECRET = "store-security-webhook-secret";
const auth = { authorization: `Bearer ${NODE_KEY}` };

const hostile = [
  "' OR '1'='1",
  "x'; DROP TABLE deploys; --",
  'x"; DELETE FROM webhook_deliveries; --',
  "%27%20OR%201%3D1--",
  "x' UNION SELECT key, value, updated_at FROM store_meta --",
];

describe("store: hostile input and the store's files", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: RunningNode;
  before(async () => {
    dir = await tempDir("tabbify-store-sec");
    node = await startNode({
      port: 0,
      dataDir: join(dir.path, "data"),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
      logger: silentLogger,
      // allowPrivateRepos: there is no DNS here, and github.com must pass the repo_url check.
      deploy: { githubWebhookSecret: SECRET, githubApiUrl: "http://127.0.0.1:9", allowPrivateRepos: true },
    });
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("ids in paths and delivery headers are data: unknown ids are 404, tables are intact", async () => {
    const accepted = await fetch(`${node.url}/v1/deploy`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ repo_url: "https://github.com/sec/app", ref: "main", tenant: "sec" }),
    });
    assert.equal(accepted.status, 202);
    for (const id of hostile) {
      const res = await fetch(`${node.url}/v1/deploy/${encodeURIComponent(id)}/status`, { headers: auth });
      assert.equal(res.status, 404, id);
      assert.equal(((await res.json()) as { code: string }).code, "DEPLOY_NOT_FOUND");
      const events = await fetch(`${node.url}/v1/deploy/${encodeURIComponent(id)}/events`, { headers: auth });
      assert.equal(events.status, 404, id);
      await events.body?.cancel();
    }
    // Hostile delivery ids are claimed and noted as themselves, nothing more.
    for (const id of hostile) {
      // A body of its own per delivery: a signed body seen before is a replay, whatever its id.
      const raw = JSON.stringify({ action: "opened", delivery: id });
      const res = await fetch(`${node.url}/v1/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "issues",
          "x-github-delivery": id,
          "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(raw).digest("hex")}`,
        },
        body: raw,
      });
      assert.equal(res.status, 200, id);
    }
    const deploys = (await (await fetch(`${node.url}/v1/deploys`, { headers: auth })).json()) as {
      deploys: unknown[];
    };
    assert.equal(deploys.deploys.length, 1, "the one deploy is still there, and only it");
    const deliveries = (await (
      await fetch(`${node.url}/v1/webhooks/deliveries`, { headers: auth })
    ).json()) as {
      deliveries: { delivery_id: string }[];
    };
    assert.deepEqual(deliveries.deliveries.map((d) => d.delivery_id).sort(), [...hostile].sort());
  });

  it("the data dir is 0700 and the store's files 0600", () => {
    const data = join(dir.path, "data");
    assert.equal(statSync(data).mode & 0o777, 0o700);
    for (const name of ["node.db", "node.db-wal"]) {
      assert.equal(statSync(join(data, name)).mode & 0o777, 0o600, name);
    }
  });
});

describe("store: a Postgres password stays out of argv, logs and errors", () => {
  let pg: PostgresServer;
  before(async () => {
    pg = await startPostgres();
  });
  after(() => pg?.stop());

  it("--database with a password on the command line is refused without echoing it", async () => {
    const dir = await tempDir("tabbify-store-sec");
    try {
      const url = await pg.createDatabase();
      const password = new URL(url).password;
      const proc = spawnTabbify([
        "node",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir.path,
        "--database",
        url,
        "--allow-private-repos",
      ]);
      const code = await proc.exited;
      assert.equal(code, 1, proc.output());
      assert.match(proc.output(), /TABBIFY_DATABASE_URL/);
      assert.ok(!proc.output().includes(password), "the password is not echoed");
    } finally {
      await dir.remove();
    }
  });

  it("TABBIFY_DATABASE_URL: the node runs on Postgres and logs where, without the password", async () => {
    const dir = await tempDir("tabbify-store-sec");
    const url = await pg.createDatabase();
    const password = new URL(url).password;
    const port = await freePort();
    const proc = spawnTabbify(
      ["node", "--listen", `127.0.0.1:${port}`, "--data", dir.path, "--allow-private-repos"],
      {
        TABBIFY_DATABASE_URL: url,
        TABBIFY_NODE_KEY: NODE_KEY,
      },
    );
    try {
      await proc.waitForLine(/node listening/, 30_000);
      const accepted = await fetch(`http://127.0.0.1:${port}/v1/deploy`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ repo_url: "https://github.com/sec/app", ref: "main", tenant: "sec" }),
      });
      assert.equal(accepted.status, 202);
      const { id } = (await accepted.json()) as { id: string };
      const store = await openStore({ engine: "postgres", url });
      try {
        const row = await store.db.selectFrom("deploys").select("id").where("id", "=", id).executeTakeFirst();
        assert.deepEqual(row, { id }, "the deploy is in Postgres");
      } finally {
        await store.close();
      }
      assert.match(proc.output(), /store open/);
      const argv = readFileSync(`/proc/${proc.child.pid}/cmdline`, "utf8");
      assert.ok(!argv.includes(password), "no password in the node's argv");
    } finally {
      await proc.stop();
      await dir.remove();
    }
    assert.ok(!proc.output().includes(password), "no password in the node's output");
  });

  it("a wrong password or an unreachable server fails the start with a clear error and no password", async () => {
    const dir = await tempDir("tabbify-store-sec");
    try {
      const good = new URL(await pg.createDatabase());
      const wrong = new URL(good);
      wrong.password = "not-the-password-5f3a9c";
      const closed = new URL(good);
      closed.port = String(await freePort());
      for (const url of [wrong, closed]) {
        const proc = spawnTabbify(["node", "--listen", "127.0.0.1:0", "--data", dir.path], {
          TABBIFY_DATABASE_URL: url.toString(),
          TABBIFY_NODE_KEY: NODE_KEY,
        });
        const code = await proc.exited;
        assert.equal(code, 1, proc.output());
        assert.match(proc.output(), /STORE_MIGRATION_FAILED|STORE_UNAVAILABLE/);
        assert.ok(!proc.output().includes(url.password), "the password is not in the error");
      }
    } finally {
      await dir.remove();
    }
  });
});
