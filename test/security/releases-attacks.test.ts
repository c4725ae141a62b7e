/**
 * Attacks on the release surface: a tenant token cannot list, register, roll back or promote
 * another tenant's app; no credential is a 401; `latest` or a made-up digest is never a release to
 * roll to; promotion refuses what never ran in its source; hostile bodies are 4xx that change
 * nothing (no release, no run, no audit event); the probes reveal nothing but version and health.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { call, fetchAudit } from "../support/apps-api.js";
import { tempDir } from "../support/tools.js";

const KEY = "releases-attack-node-key-0123456";
const file = (path: string, n: number) => ({ path, digest: `sha256:${n.toString(16).padStart(64, "0")}` });

describe("releases under attack", () => {
  let dir: { path: string; remove(): Promise<void> };
  let node: RunningNode;
  let acme: string;

  before(async () => {
    dir = await tempDir("tabbify-releases-attack");
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
    await call(node.url, "PUT", "/api/v1/apps/vault", { token: KEY, body: { tenant: "globex" } });
    await call(node.url, "PUT", "/api/v1/apps/acme-web", { token: KEY, body: { tenant: "acme" } });
    const made = await call(node.url, "POST", "/api/v1/apps/vault/releases", {
      token: KEY,
      body: { version: "v1", manifest_toml: "[app]\n", files: [file("a", 1)] },
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("a tenant token cannot reach another tenant's releases, rollback or promotion", async () => {
    const attempts: [string, string, unknown][] = [
      ["GET", "/api/v1/apps/vault/releases", undefined],
      ["POST", "/api/v1/apps/vault/releases", { version: "v9", manifest_toml: "x", files: [] }],
      ["POST", "/api/v1/apps/vault/rollback", {}],
      ["POST", "/api/v1/apps/vault/promote", { from: "prod", to: "test" }],
    ];
    const before = (await fetchAudit(node.url, KEY)).length;
    for (const [method, path, body] of attempts) {
      const res = await call(node.url, method, path, { token: acme, ...(body ? { body } : {}) });
      assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res.body)}`);
      const anonymous = await fetch(`${node.url}${path}`, { method });
      assert.equal(anonymous.status, 401, `${method} ${path} without a credential`);
    }
    assert.equal((await fetchAudit(node.url, KEY)).length, before, "no refused call left an event");
    const own = await call(node.url, "GET", "/api/v1/apps/acme-web/releases", { token: acme });
    assert.equal(own.status, 200);
    assert.deepEqual(own.body.releases, []);
  });

  it("never rolls to `latest`, a tag or an unknown digest, and promotes only what ran in the source", async () => {
    for (const to of ["latest", "v1", `sha256:${"f".repeat(64)}`, "../../etc/passwd"]) {
      const res = await call(node.url, "POST", "/api/v1/apps/vault/rollback", { token: KEY, body: { to } });
      assert.equal(res.status, 404, `${to}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, "RELEASE_NOT_FOUND");
    }
    const listed = await call(node.url, "GET", "/api/v1/apps/vault/releases", { token: KEY });
    const id = (listed.body.releases as { id: string }[])[0]!.id;
    const unverified = await call(node.url, "POST", "/api/v1/apps/vault/promote", {
      token: KEY,
      body: { from: "test", to: "prod", release: id },
    });
    assert.equal(unverified.status, 409);
    assert.equal(unverified.body.code, "NOT_VERIFIED_IN");
  });

  it("hostile bodies are 400s that record nothing", async () => {
    const before = (await fetchAudit(node.url, KEY)).length;
    const bodies: [string, unknown][] = [
      ["releases", { version: "v2", manifest_toml: "x", files: [file("a", 1), file("a", 2)] }],
      ["releases", { version: "v2", manifest_toml: "x", files: [{ path: "a", digest: "md5:00" }] }],
      ["releases", { version: "", manifest_toml: "x", files: [] }],
      ["releases", [1, 2]],
      ["rollback", { env: 7 }],
      ["rollback", { to: "" }],
      ["promote", { from: "prod", to: "prod" }],
      ["promote", { from: "prod", to: "Bad Env/.." }],
      ["promote", { from: "prod" }],
    ];
    for (const [route, body] of bodies) {
      const res = await call(node.url, "POST", `/api/v1/apps/vault/${route}`, { token: KEY, body });
      assert.equal(res.status, 400, `${route} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    }
    assert.equal((await fetchAudit(node.url, KEY)).length, before);
    const listed = await call(node.url, "GET", "/api/v1/apps/vault/releases", { token: KEY });
    assert.equal((listed.body.releases as unknown[]).length, 1);
  });

  it("the probes answer without a credential and show no secret or internal detail", async () => {
    for (const path of ["/api/healthz", "/api/ready", "/api/version"]) {
      const res = await fetch(`${node.url}${path}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!text.includes(KEY), path);
      assert.ok(!text.includes(dir.path), `${path} shows no data dir`);
    }
  });
});
