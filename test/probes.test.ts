// §2 of issue 11: every role (node, registry, auth, supervisor) serves /api/healthz, /api/ready and
// /api/version on its own listener without a credential, and the node's ready names the
// dependency that stops answering.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { buildAuthApp } from "../src/auth/server.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { tenantRegistryAccess } from "../src/node/registry-access.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { SupervisorUnderTest } from "./runtime-plane-support.js";
import { repoRoot, tempDir } from "./support/tools.js";

let root: { path: string; remove(): Promise<void> };
let auth: FastifyInstance;
let authUrl: string;
let registry: RunningRegistry;
let node: RunningNode;
let supervisor: SupervisorUnderTest;

before(async () => {
  root = await tempDir("tabbify-probes");
  const authDir = join(root.path, "auth");
  auth = buildAuthApp({ key: await loadOrCreateSigningKey(authDir) });
  await auth.listen({ host: "127.0.0.1", port: 0 });
  authUrl = `http://127.0.0.1:${(auth.server.address() as AddressInfo).port}`;
  registry = await startRegistry({ dataDir: join(root.path, "registry"), authUrl });
  node = await startNode({
    port: 0,
    dataDir: join(root.path, "node"),
    nodeKey: "probes-node-key",
    httpLogLevel: "silent",
    deploy: {
      registry: await tenantRegistryAccess({
        registryHost: new URL(registry.url).host,
        authDataDir: authDir,
      }),
    },
  });
  supervisor = new SupervisorUnderTest();
  await supervisor.start();
});

after(async () => {
  await supervisor?.cleanup();
  await node?.close();
  await registry?.close();
  await auth?.close();
  await root?.remove();
});

async function get(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const headCommit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repoRoot }).toString().trim();

describe("role probes", () => {
  it("every role answers healthz, ready and version without a credential", async () => {
    const roles = { node: node.url, registry: registry.url, auth: authUrl, supervisor: supervisor.base };
    for (const [role, base] of Object.entries(roles)) {
      const health = await get(`${base}/api/healthz`);
      assert.deepEqual([health.status, health.json.status], [200, "ok"], `${role} healthz`);
      const ready = await get(`${base}/api/ready`);
      assert.equal(ready.status, 200, `${role} ready: ${JSON.stringify(ready.json)}`);
      assert.equal(ready.json.status, "ready");
      const version = await get(`${base}/api/version`);
      assert.equal(version.status, 200);
      assert.match(String(version.json.version), /^\d+\.\d+\.\d+/, `${role} version`);
      // The build stamp (scripts/stamp-build.mjs, run after tsc): this checkout's commit and a time.
      assert.equal(version.json.commit, headCommit, `${role}: ${JSON.stringify(version.json)}`);
      assert.ok(!Number.isNaN(Date.parse(String(version.json.built_at))), `${role} built_at`);
    }
    const nodeReady = await get(`${node.url}/api/ready`);
    assert.deepEqual(Object.keys(nodeReady.json.checks as object).sort(), ["registry", "store"]);
    const registryReady = await get(`${registry.url}/api/ready`);
    assert.deepEqual(Object.keys(registryReady.json.checks as object), ["storage"]);
    // Everything else on the supervisor still needs its key.
    assert.equal((await fetch(`${supervisor.base}/v1/apps`)).status, 401);
  });

  it("the node's ready answers 503 naming the registry once it stops answering", async () => {
    await registry.close();
    const ready = await get(`${node.url}/api/ready`);
    assert.equal(ready.status, 503, JSON.stringify(ready.json));
    assert.deepEqual(ready.json.failing, ["registry"]);
    assert.equal(ready.json.code, "NOT_READY");
    assert.equal((await get(`${node.url}/api/healthz`)).status, 200, "alive all the same");
  });
});
