/**
 * Attacks on what the second cut of releases added: `tcli push` registration creating apps on
 * first sight (a tenant cannot register into, or create under, another tenant), the deploy lock's
 * `?wait=false` (no foreign app's holder is revealed), and the supervisor's `release` deploy field
 * (no caller chooses which host file a workload gets, no path escapes the releases directory, no
 * unbounded write).
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { SupervisorUnderTest } from "../runtime-plane-support.js";
import { call, fetchAudit } from "../support/apps-api.js";
import { tempDir } from "../support/tools.js";

const KEY = "releases-queue-attack-node-key-01";
const pushed = (name: string, extra: Record<string, unknown> = {}) => ({
  version: "v1",
  manifest_toml: `[app]\nname = "${name}"\n`,
  files: [{ path: "server.js", digest: `sha256:${"1".repeat(64)}` }],
  name,
  ...extra,
});

describe("release registration, the queue and the release field under attack", () => {
  let dir: { path: string; remove(): Promise<void> };
  let node: RunningNode;
  let acme: string;
  let vaultUuid: string;

  before(async () => {
    dir = await tempDir("tabbify-releases-queue-attack");
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const key: SigningKey = {
      privateKey,
      publicKey,
      kid: await calculateJwkThumbprint(await exportJWK(publicKey)),
    };
    acme = await issueTenantToken(key, { tenant: "acme", subject: "dev", ttlSeconds: 600 });
    node = await startNode({
      port: 0,
      httpLogLevel: "silent",
      nodeKey: KEY,
      dataDir: join(dir.path, "node"),
      registry: { verifyTenantToken: (t) => verifyTenantToken(key, t) },
    });
    const vault = await call(node.url, "PUT", "/api/v1/apps/vault", {
      token: KEY,
      body: { tenant: "globex" },
    });
    vaultUuid = String(vault.body.uuid ?? (vault.body.app as { uuid?: string } | undefined)?.uuid);
    if (!/^[0-9a-f-]{36}$/.test(vaultUuid)) {
      vaultUuid = String((await call(node.url, "GET", "/api/v1/apps/vault", { token: KEY })).body.uuid);
    }
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("a tenant cannot register a version into another tenant's app by its uuid", async () => {
    const before = (await fetchAudit(node.url, KEY)).length;
    const res = await call(node.url, "POST", `/api/v1/apps/${vaultUuid}/releases`, {
      token: acme,
      body: pushed("vault"),
    });
    assert.equal(res.status, 404, JSON.stringify(res.body));
    assert.equal(res.body.code, "APP_NOT_FOUND");
    assert.equal((await fetchAudit(node.url, KEY)).length, before, "nothing created, nothing audited");
    const vault = await call(node.url, "GET", "/api/v1/apps/vault/releases", { token: KEY });
    assert.deepEqual(vault.body.releases, []);
    const still = await call(node.url, "GET", "/api/v1/apps/vault", { token: KEY });
    assert.equal(still.body.tenant, "globex");
  });

  it("an app created on first sight belongs to the caller's tenant, whatever the body claims", async () => {
    const uuid = "0193a000-0000-7000-8000-00000000beef";
    const res = await call(node.url, "POST", `/api/v1/apps/${uuid}/releases`, {
      token: acme,
      body: pushed("sneaky", { tenant: "globex" }),
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const app = await call(node.url, "GET", `/api/v1/apps/${uuid}`, { token: KEY });
    assert.equal(app.body.tenant, "acme");
    // A name is not a uuid: no app comes to be under an arbitrary name.
    const byName = await call(node.url, "POST", "/api/v1/apps/not-a-uuid/releases", {
      token: acme,
      body: pushed("not-a-uuid"),
    });
    assert.equal(byName.status, 404);
    const badName = await call(
      node.url,
      "POST",
      `/api/v1/apps/0193a000-0000-7000-8000-00000000cafe/releases`,
      {
        token: acme,
        body: pushed("x", { name: 42 }),
      },
    );
    assert.equal(badName.status, 400);
  });

  it("?wait=false on another tenant's app reveals no holder", async () => {
    for (const route of ["rollback", "promote"]) {
      const res = await call(node.url, "POST", `/api/v1/apps/vault/${route}?wait=false`, {
        token: acme,
        body: route === "promote" ? { from: "test", to: "prod" } : {},
      });
      assert.equal(res.status, 404, `${route}: ${JSON.stringify(res.body)}`);
      assert.ok(!JSON.stringify(res.body).includes("holder"));
    }
  });

  it("the supervisor takes no host path for the release manifest and writes only under its own directory", async () => {
    const supervisor = new SupervisorUnderTest();
    try {
      await supervisor.start();
      const uuid = "0193a000-0000-7000-8000-0000000000aa";
      const base = { runtime: "process", command: ["/bin/true"], artifact_dir: "/tmp" };
      const refused: [string, Record<string, unknown>][] = [
        ["a host path", { ...base, release_manifest: "/etc/shadow" }],
        ["a traversing id", { ...base, release: { id: "../../../../tmp/pwned", manifest: {} } }],
        ["a non-uuid id", { ...base, release: { id: "x", manifest: {} } }],
        ["a manifest that is not an object", { ...base, release: { id: uuid, manifest: "text" } }],
        [
          "an oversized manifest",
          { ...base, release: { id: uuid, manifest: { pad: "x".repeat(70 * 1024) } } },
        ],
      ];
      for (const [what, body] of refused) {
        const res = await supervisor.call("POST", `/v1/apps/${uuid}/deploy`, body);
        assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.json)}`);
        assert.equal(res.json.code, "SPEC_INVALID", what);
      }
      assert.equal(existsSync("/tmp/pwned.json"), false);
      const releases = join(supervisor.dataDir, "releases");
      const written = existsSync(releases) ? readdirSync(releases, { recursive: true }) : [];
      assert.deepEqual(written, [], "nothing refused left a file");
    } finally {
      await supervisor.cleanup();
    }
  });
});
