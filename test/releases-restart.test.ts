/**
 * A node that dies mid-rollout leaves its deploy `running` and its deploy lock and queue place in
 * the store. On restart the node closes that deploy as failed, frees the lock and the queue place,
 * and says so in the audit chain (`deploy.interrupted`); another node's running deploy and its lock
 * are left alone. The store is the node's real SQLite file, written as the dead node left it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NODE_DB_FILE, nodeOwner } from "../src/node/node-store.js";
import { DeployLock } from "../src/node/releases-lock.js";
import { startNode } from "../src/node/server.js";
import { openStore } from "../src/store/index.js";
import { call, fetchAudit } from "./support/apps-api.js";
import { tempDir } from "./support/tools.js";

const KEY = "releases-restart-node-key-012345";
const APP = "0193b000-0000-7000-8000-000000000001";

describe("a node killed mid-rollout", () => {
  let dir: { path: string; remove(): Promise<void> };
  before(async () => {
    dir = await tempDir("tabbify-releases-restart");
  });
  after(async () => {
    await dir?.remove();
  });

  it("on restart fails the deploy, frees its lock and queue place, and audits it", async () => {
    const dataDir = join(dir.path, "node");
    // A first start creates the store; then write what a node killed mid-rollout leaves behind.
    await (await startNode({ port: 0, httpLogLevel: "silent", nodeKey: KEY, dataDir })).close();
    const store = await openStore({ engine: "sqlite", file: join(dataDir, NODE_DB_FILE) });
    const deploy = (id: string, owner: string, status: string) =>
      store.db
        .insertInto("deploys")
        .values({
          id,
          status,
          created_at: new Date().toISOString(),
          finished_at: null,
          app_uuid: APP,
          image_ref: null,
          digest: null,
          request: JSON.stringify({ trigger: "rollback", repoUrl: "", ref: "x", tenant: "t" }),
          results: "[]",
          error: null,
          owner,
        })
        .execute();
    await deploy("0193b000-0000-7000-8000-0000000000d1", nodeOwner(dataDir), "running");
    await deploy("0193b000-0000-7000-8000-0000000000d2", nodeOwner(dataDir), "queued");
    await deploy("0193b000-0000-7000-8000-0000000000d3", "another-node", "running");
    const lock = new DeployLock(store);
    await lock.acquire(APP, "prod", "0193b000-0000-7000-8000-0000000000d1", "rollback by alice", {
      wait: false,
    });
    await store.db
      .insertInto("deploy_queue")
      .values({
        app_uuid: APP,
        environment: "prod",
        deploy_id: "0193b000-0000-7000-8000-0000000000d2",
        queued_at: new Date().toISOString(),
      })
      .execute();
    await lock.acquire(APP, "test", "0193b000-0000-7000-8000-0000000000d3", "promotion by bob", {
      wait: false,
    });
    await store.close();

    const node = await startNode({ port: 0, httpLogLevel: "silent", nodeKey: KEY, dataDir });
    try {
      for (const [id, state] of [
        ["0193b000-0000-7000-8000-0000000000d1", "failed"],
        ["0193b000-0000-7000-8000-0000000000d2", "failed"],
        ["0193b000-0000-7000-8000-0000000000d3", "running"],
      ] as const) {
        const status = await call(node.url, "GET", `/v1/deploy/${id}/status`, { token: KEY });
        assert.equal(status.body.state, state, `${id}: ${JSON.stringify(status.body)}`);
      }
      const interrupted = (await fetchAudit(node.url, KEY)).filter(
        (e) => (e as { action?: string }).action === "deploy.interrupted",
      );
      assert.equal(interrupted.length, 1, JSON.stringify(interrupted));
      assert.match(JSON.stringify(interrupted[0]), /rollback by alice/);
    } finally {
      await node.close();
    }
    const after = await openStore({ engine: "sqlite", file: join(dataDir, NODE_DB_FILE) });
    try {
      const locks = await after.db.selectFrom("deploy_locks").select(["environment", "deploy_id"]).execute();
      assert.deepEqual(locks, [{ environment: "test", deploy_id: "0193b000-0000-7000-8000-0000000000d3" }]);
      assert.deepEqual(await after.db.selectFrom("deploy_queue").selectAll().execute(), []);
    } finally {
      await after.close();
    }
  });
});
