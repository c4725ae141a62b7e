/**
 * Attacks on POST /api/v1/platform/upgrade: without the node key (none, wrong, another
 * credential) the upload is refused before a byte of it is stored and no upgrade is recorded;
 * with the key, a node that does not run under `tabbify up` says so (409) and keeps nothing.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/core/log.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { openStore } from "../../src/store/index.js";
import { tempDir } from "../support/tools.js";

const NODE_KEY = "upgrade-security-node-key";

describe("upgrade: the platform upgrade API", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: RunningNode;
  const dataDir = () => join(dir.path, "node");
  before(async () => {
    dir = await tempDir("tabbify-upgrade-auth");
    node = await startNode({
      port: 0,
      dataDir: dataDir(),
      nodeKey: NODE_KEY,
      httpLogLevel: "silent",
      logger: silentLogger,
    });
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  const upload = (headers: Record<string, string>) =>
    fetch(`${node.url}/api/v1/platform/upgrade`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", ...headers },
      body: Buffer.alloc(64 * 1024, 1),
    });

  it("refuses uploads without the node key and stores nothing", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer not-the-key" },
      { authorization: `Basic ${Buffer.from(`x:${NODE_KEY}`).toString("base64")}` },
      { authorization: `Bearer ${NODE_KEY}x` },
    ];
    for (const headers of attempts) {
      const res = await upload(headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(((await res.json()) as { code: string }).code, "UNAUTHORIZED");
    }
    const rollback = await fetch(`${node.url}/api/v1/platform/upgrade`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rollback: true }),
    });
    assert.equal(rollback.status, 401);
    const status = await fetch(`${node.url}/api/v1/platform/upgrades/00000000-0000-4000-8000-000000000000`);
    assert.equal(status.status, 401);
    assert.equal(existsSync(join(dataDir(), "platform-upgrades")), false);
  });

  it("with the key, a node outside tabbify up answers 409 and records nothing", async () => {
    const res = await upload({ authorization: `Bearer ${NODE_KEY}` });
    assert.equal(res.status, 409);
    assert.equal(((await res.json()) as { code: string }).code, "UPGRADE_UNAVAILABLE");
    const dir = join(dataDir(), "platform-upgrades");
    assert.ok(!existsSync(dir) || readdirSync(dir).length === 0);
    const store = await openStore({ engine: "sqlite", file: join(dataDir(), "node.db") });
    try {
      const rows = await store.db.selectFrom("platform_upgrades").selectAll().execute();
      assert.deepEqual(rows, []);
    } finally {
      await store.close();
    }
  });

  it("an unknown or malformed upgrade id is a 404, not an error", async () => {
    for (const id of ["00000000-0000-4000-8000-000000000000", "..%2F..%2Fetc", "x'%20OR%201=1"]) {
      const res = await fetch(`${node.url}/api/v1/platform/upgrades/${id}`, {
        headers: { authorization: `Bearer ${NODE_KEY}` },
      });
      assert.equal(res.status, 404, id);
    }
  });
});
