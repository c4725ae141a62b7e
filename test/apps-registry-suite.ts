import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { calculateJwkThumbprint, exportJWK } from "jose";
import type { SigningKey } from "../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../src/auth/tenant-token.js";
import { sleep } from "../src/core/sleep.js";
import { nodeKeyActor } from "../src/node/apps-identity.js";
import { type NodeOptions, type RunningNode, startNode } from "../src/node/index.js";
import { call, fetchAudit, firstBrokenSeq } from "./support/apps-api.js";

/**
 * The app registry API end to end, against one engine: `setup` gives node options (data dir, and
 * a database URL for Postgres) and a fingerprint of everything the store holds.
 */
export interface RegistryEngine {
  name: string;
  /** A fresh store each call. */
  nodeOptions(): Promise<Partial<NodeOptions> & { dataDir: string }>;
  /** Changes whenever anything in the store changes (file bytes, or every row). */
  fingerprint(node: RunningNode, opts: { dataDir: string }): Promise<string>;
  /**
   * Holds the store-level lock of app `name` from outside the node until the returned function is
   * called (Postgres: the advisory lock a mutation takes), so a mutation stalls while it holds the
   * node's per-app lock. Engines that cannot do this without stalling the node leave it out.
   */
  holdStoreLock?(opts: { databaseUrl?: string }, name: string): Promise<() => Promise<void>>;
}

const KEY = "apps-registry-node-key-0123456789";
const WEBHOOK_SECRET = "apps-registry-webhook-secret-zyx";

async function signingKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey, kid: await calculateJwkThumbprint(await exportJWK(publicKey)) };
}

export function registryApiSuite(engine: RegistryEngine): void {
  describe(`app registry API (${engine.name})`, () => {
    let node: RunningNode;
    let opts: Partial<NodeOptions> & { dataDir: string };
    let key: SigningKey;
    let acmeToken: string;
    const admin = { token: KEY };
    const actor = nodeKeyActor(KEY);

    before(async () => {
      key = await signingKey();
      acmeToken = await issueTenantToken(key, { tenant: "acme", subject: "ci-bot", ttlSeconds: 600 });
      opts = await engine.nodeOptions();
      node = await startNode({
        port: 0,
        httpLogLevel: "silent",
        nodeKey: KEY,
        ...opts,
        deploy: { githubWebhookSecret: WEBHOOK_SECRET },
        registry: {
          allowedServers: ["edge-1"],
          verifyTenantToken: (t) => verifyTenantToken(key, t),
          seedApps: [{ name: "seeded", tenant: "acme" }],
        },
      });
    });
    after(async () => node?.close());

    it("refuses callers without the node key or a tenant token", async () => {
      assert.equal((await call(node.url, "GET", "/api/v1/apps")).status, 401);
      assert.equal((await call(node.url, "GET", "/api/v1/apps", { token: "wrong" })).status, 401);
      const other = await issueTenantToken(await signingKey(), {
        tenant: "acme",
        subject: "x",
        ttlSeconds: 60,
      });
      assert.equal(
        (await call(node.url, "GET", "/api/v1/apps", { token: other })).status,
        401,
        "a token signed by another key",
      );
      assert.equal((await call(node.url, "GET", "/api/v1/audit", { token: acmeToken })).status, 403);
      assert.equal(
        (await call(node.url, "GET", "/api/v1/registry/export", { token: acmeToken })).status,
        403,
      );
    });

    it("seeded the registry on first boot, audited as system", async () => {
      const res = await call(node.url, "GET", "/api/v1/apps/seeded", admin);
      assert.equal(res.status, 200);
      assert.equal(res.body.tenant, "acme");
      const events = await fetchAudit(node.url, KEY);
      assert.equal(events[0]?.actor, "system");
      assert.equal(events[0]?.action, "app.create");
    });

    it("creates with defaults (201), reads by name and by uuid, replaces (200)", async () => {
      const created = await call(node.url, "PUT", "/api/v1/apps/web", {
        ...admin,
        body: { tenant: "acme", repo_url: "https://github.com/acme/web.git", servers: ["edge-1"] },
      });
      assert.equal(created.status, 201, created.text);
      const app = created.body.after as Record<string, unknown>;
      assert.equal(app.branch, "main");
      assert.deepEqual(app.environments, ["prod"]);
      assert.equal(created.body.before, null);
      const byUuid = await call(node.url, "GET", `/api/v1/apps/${app.uuid}`, admin);
      assert.deepEqual(byUuid.body, app);
      const replaced = await call(node.url, "PUT", "/api/v1/apps/web", {
        ...admin,
        body: { ...app, branch: "release" },
      });
      assert.equal(replaced.status, 200, replaced.text);
      assert.deepEqual(replaced.body.changes, [
        { path: "/branch", op: "replace", from: "main", to: "release" },
      ]);
      const again = await call(node.url, "PUT", "/api/v1/apps/web", {
        ...admin,
        body: { ...app, branch: "release" },
      });
      assert.equal(again.body.changed, false, "an identical PUT changes nothing and audits nothing");
    });

    it("answers every refusal with 400 naming the field and rule, and changes nothing", async () => {
      const beforeState = await engine.fingerprint(node, opts);
      const cases: Array<[unknown, RegExp]> = [
        [{ tenant: "acme", replicas: 2 }, /^replicas: is not a known field/],
        [{ tenant: "acme", branch: "a..b" }, /^branch: .*'\.\.'/],
        [{ tenant: "acme", servers: ["nowhere"] }, /^servers\[0\]: .*roster/],
        [{ name: "other", tenant: "acme" }, /^name: must match the name in the URL/],
        [{}, /^tenant: is required/],
        [{ tenant: "acme", env: { API_KEY: "secret-env-value-123" } }, /^env: lists variable names only/],
      ];
      for (const [body, message] of cases) {
        const res = await call(node.url, "PUT", "/api/v1/apps/api", { ...admin, body });
        assert.equal(res.status, 400, res.text);
        assert.equal(res.body.code, "APP_INVALID");
        assert.match(String(res.body.error), message);
        assert.ok(!res.text.includes("secret-env-value-123"));
      }
      const badName = await call(node.url, "PUT", "/api/v1/apps/Bad_Name", {
        ...admin,
        body: { tenant: "acme" },
      });
      assert.equal(badName.status, 400);
      assert.match(String(badName.body.error), /^name: must be a DNS label/);
      assert.equal(await engine.fingerprint(node, opts), beforeState);
    });

    it("dry runs answer the diff and leave the store byte-for-byte unchanged", async () => {
      const beforeState = await engine.fingerprint(node, opts);
      const auditBefore = (await fetchAudit(node.url, KEY)).length;
      const put = await call(node.url, "PUT", "/api/v1/apps/dry?dry_run=1", {
        ...admin,
        body: { tenant: "acme" },
      });
      assert.equal(put.status, 200);
      assert.equal(put.body.dry_run, true);
      assert.ok(put.body.changes && (put.body.changes as unknown[]).length > 0);
      const patch = await call(node.url, "PATCH", "/api/v1/apps/web?dry_run=1", {
        ...admin,
        body: { description: "dry", build: { context: "app" } },
        contentType: "application/merge-patch+json",
      });
      assert.equal(patch.status, 200, patch.text);
      assert.deepEqual(patch.body.changes, [
        { path: "/build/context", op: "replace", from: ".", to: "app" },
        { path: "/description", op: "replace", from: "", to: "dry" },
      ]);
      const del = await call(node.url, "DELETE", "/api/v1/apps/web?dry_run=1", admin);
      assert.equal(del.status, 200);
      assert.equal(del.body.after, null);
      assert.equal((await call(node.url, "GET", "/api/v1/apps/dry", admin)).status, 404);
      assert.equal(await engine.fingerprint(node, opts), beforeState);
      assert.equal((await fetchAudit(node.url, KEY)).length, auditBefore);
    });

    it("20 parallel PATCHes of different fields all land", async () => {
      const created = await call(node.url, "PUT", "/api/v1/apps/busy", {
        ...admin,
        body: { tenant: "acme" },
      });
      assert.equal(created.status, 201);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          call(node.url, "PATCH", "/api/v1/apps/busy", {
            ...admin,
            body: { labels: { [`k${i}`]: `v${i}` } },
            contentType: "application/merge-patch+json",
          }),
        ),
      );
      for (const res of results) assert.equal(res.status, 200, res.text);
      const app = await call(node.url, "GET", "/api/v1/apps/busy", admin);
      const labels = app.body.labels as Record<string, string>;
      for (let i = 0; i < 20; i++) assert.equal(labels[`k${i}`], `v${i}`);
      const updates = (await fetchAudit(node.url, KEY)).filter(
        (e) => e.subject === "app:busy" && e.action === "app.update",
      );
      assert.equal(updates.length, 20);
    });

    // SQLite has one connection: holding its lock from outside would stall the whole node, so the
    // 409 path is covered there by src/node/apps-lock.test.ts.
    const holdStoreLock = engine.holdStoreLock;
    if (holdStoreLock)
      it("answers 409 naming the holder when an app's lock is not free within 5 s", async () => {
        const release = await holdStoreLock(opts, "busy");
        const patch = (labels: Record<string, string>, token: string) =>
          call(node.url, "PATCH", "/api/v1/apps/busy", { token, body: { labels } });
        const first = patch({ first: "1" }, KEY);
        await sleep(300);
        const started = Date.now();
        const second = await patch({ second: "2" }, acmeToken);
        assert.equal(second.status, 409, second.text);
        assert.equal(second.body.code, "APP_LOCKED");
        assert.match(String(second.body.error), new RegExp(`locked by ${actor} \\(app\\.update since`));
        assert.ok(Date.now() - started >= 4_500, "it waited the 5 s out");
        await release();
        assert.equal((await first).status, 200);
        const app = await call(node.url, "GET", "/api/v1/apps/busy", admin);
        assert.equal((app.body.labels as Record<string, string>).first, "1");
        assert.equal((app.body.labels as Record<string, string>).second, undefined);
      });

    it("tenant tokens reach only their tenant's apps, and are the actor", async () => {
      await call(node.url, "PUT", "/api/v1/apps/globex-site", { ...admin, body: { tenant: "globex" } });
      const list = await call(node.url, "GET", "/api/v1/apps", { token: acmeToken });
      const names = (list.body.apps as Array<{ name: string; tenant: string }>).map((a) => a.tenant);
      assert.ok(names.length > 0 && names.every((t) => t === "acme"));
      assert.equal(
        (await call(node.url, "GET", "/api/v1/apps/globex-site", { token: acmeToken })).status,
        404,
      );
      assert.equal(
        (await call(node.url, "DELETE", "/api/v1/apps/globex-site", { token: acmeToken })).status,
        404,
      );
      const foreign = await call(node.url, "PUT", "/api/v1/apps/grab", {
        token: acmeToken,
        body: { tenant: "globex" },
      });
      assert.equal(foreign.status, 403);
      const own = await call(node.url, "PUT", "/api/v1/apps/mine", { token: acmeToken, body: {} });
      assert.equal(own.status, 201, own.text);
      const events = await fetchAudit(node.url, KEY);
      assert.equal(events.at(-1)?.actor, "tenant:acme/ci-bot");
      assert.equal(events.at(-2)?.actor, actor);
    });

    it("deletes, audited with the document it removed", async () => {
      const res = await call(node.url, "DELETE", "/api/v1/apps/mine", admin);
      assert.equal(res.status, 200);
      assert.equal((await call(node.url, "GET", "/api/v1/apps/mine", admin)).status, 404);
      const last = (await fetchAudit(node.url, KEY)).at(-1);
      assert.equal(last?.action, "app.delete");
      assert.equal((last?.before as { name?: string } | undefined)?.name, "mine");
      assert.equal("after" in (last ?? {}), false);
    });

    it("exports the registry and writes a 0600 snapshot", async () => {
      const res = await call(node.url, "GET", "/api/v1/registry/export", admin);
      assert.equal(res.status, 200);
      const snapshot = String(res.body.snapshot);
      assert.match(snapshot, /^snapshots\/registry-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z\.json$/);
      const file = join(opts.dataDir, snapshot);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const saved = JSON.parse(await readFile(file, "utf8")) as { apps: unknown[] };
      assert.deepEqual(saved.apps, res.body.apps);
    });

    it("keeps a chain anyone can recompute from the API alone, with no secret in it", async () => {
      const events = await fetchAudit(node.url, KEY, 3);
      assert.ok(events.length > 25);
      assert.equal(firstBrokenSeq(events), undefined);
      const text = JSON.stringify(events);
      for (const secret of [KEY, WEBHOOK_SECRET, "secret-env-value-123", acmeToken])
        assert.ok(!text.includes(secret));
    });

    it("refuses bad paging and dry_run values", async () => {
      assert.equal((await call(node.url, "GET", "/api/v1/audit?limit=0x10", admin)).status, 400);
      assert.equal((await call(node.url, "GET", "/api/v1/audit?after=-1", admin)).status, 400);
      assert.equal((await call(node.url, "DELETE", "/api/v1/apps/web?dry_run=maybe", admin)).status, 400);
      assert.equal((await call(node.url, "GET", "/api/v1/apps/web", admin)).status, 200);
    });
  });
}
