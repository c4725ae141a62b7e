/**
 * Attacks on the app registry and the audit chain: a caller cannot pick its own audit actor,
 * a tenant token cannot see, change, dry-run or take over another tenant's apps, forged or
 * expired tokens and hostile refs are refused without a 500, and no secret reaches an answer or
 * an event.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { calculateJwkThumbprint, exportJWK, SignJWT } from "jose";
import type { SigningKey } from "../../src/auth/keys.js";
import { issueTenantToken, verifyTenantToken } from "../../src/auth/tenant-token.js";
import { nodeKeyActor } from "../../src/node/apps-identity.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { call, fetchAudit, firstBrokenSeq } from "../support/apps-api.js";
import { tempDir } from "../support/tools.js";

const KEY = "apps-attack-node-key-abcdef";

async function signingKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey, kid: await calculateJwkThumbprint(await exportJWK(publicKey)) };
}

describe("app registry and audit under attack", () => {
  let dir: { path: string; remove(): Promise<void> };
  let node: RunningNode;
  let key: SigningKey;
  let acme: string;
  let globexUuid: string;

  before(async () => {
    dir = await tempDir("tabbify-apps-attack");
    key = await signingKey();
    acme = await issueTenantToken(key, { tenant: "acme", subject: "dev", ttlSeconds: 600 });
    node = await startNode({
      port: 0,
      httpLogLevel: "silent",
      nodeKey: KEY,
      dataDir: join(dir.path, "node"),
      registry: { verifyTenantToken: (t) => verifyTenantToken(key, t) },
    });
    const globex = await call(node.url, "PUT", "/api/v1/apps/vault", {
      token: KEY,
      body: { tenant: "globex", description: "globex internal" },
    });
    globexUuid = String((globex.body.after as { uuid: string }).uuid);
    await call(node.url, "PUT", "/api/v1/apps/acme-web", { token: KEY, body: { tenant: "acme" } });
  });
  after(async () => {
    await node?.close();
    await dir?.remove();
  });

  it("the actor comes from the token alone: body fields and headers cannot set it", async () => {
    const spoof = await call(node.url, "PUT", "/api/v1/apps/spoof", {
      token: KEY,
      body: { tenant: "acme", actor: "system" },
    });
    assert.equal(spoof.status, 400);
    assert.match(String(spoof.body.error), /^actor: is not a known field/);
    const res = await fetch(`${node.url}/api/v1/apps/spoof2`, {
      method: "PUT",
      headers: {
        authorization: `Bearer ${KEY}`,
        "content-type": "application/json",
        "x-actor": "system",
        "x-forwarded-user": "root",
      },
      body: JSON.stringify({ tenant: "acme" }),
    });
    assert.equal(res.status, 201);
    const last = (await fetchAudit(node.url, KEY)).at(-1);
    assert.equal(last?.actor, nodeKeyActor(KEY));
    assert.ok(!JSON.stringify(last).includes(KEY));
  });

  it("a tenant's own repo_url cannot point a deploy at the node's neighbours (SSRF)", async () => {
    for (const repoUrl of [
      "http://169.254.169.254/latest/meta-data.git",
      "http://127.0.0.1:8730/v1/apps.git",
      "http://[::1]/x/y.git",
      "http://2130706433/x/y.git",
    ]) {
      const set = await call(node.url, "PATCH", "/api/v1/apps/acme-web", {
        token: acme,
        body: { repo_url: repoUrl },
      });
      if (set.status !== 200) {
        // The registry may refuse the URL itself: equally safe, and nothing was deployed.
        assert.equal(set.status, 400, JSON.stringify(set.body));
        continue;
      }
      const deploy = await call(node.url, "POST", "/api/v1/apps/acme-web/deploy", { token: acme, body: {} });
      assert.equal(deploy.status, 400, `${repoUrl}: ${JSON.stringify(deploy.body)}`);
      assert.equal(deploy.body.code, "REPO_URL_REFUSED");
    }
  });

  it("a tenant token cannot read, change, dry-run or move another tenant's app", async () => {
    for (const ref of ["vault", globexUuid]) {
      assert.equal((await call(node.url, "GET", `/api/v1/apps/${ref}`, { token: acme })).status, 404);
      const dry = await call(node.url, "PATCH", `/api/v1/apps/${ref}?dry_run=1`, {
        token: acme,
        body: { description: "x" },
      });
      assert.equal(dry.status, 404);
      assert.ok(!dry.text.includes("globex internal"), "no diff leaks the other tenant's document");
      assert.equal((await call(node.url, "DELETE", `/api/v1/apps/${ref}`, { token: acme })).status, 404);
      assert.equal(
        (await call(node.url, "PUT", `/api/v1/apps/${ref}`, { token: acme, body: { tenant: "acme" } }))
          .status,
        404,
      );
    }
    const move = await call(node.url, "PATCH", "/api/v1/apps/acme-web", {
      token: acme,
      body: { tenant: "globex" },
    });
    assert.equal(move.status, 400);
    assert.match(String(move.body.error), /^tenant: cannot change/);
    const create = await call(node.url, "PUT", "/api/v1/apps/plant", {
      token: acme,
      body: { tenant: "globex" },
    });
    assert.equal(create.status, 403);
    const steal = await call(node.url, "PUT", "/api/v1/apps/twin", {
      token: acme,
      body: { uuid: globexUuid },
    });
    assert.equal(steal.status, 400, "a tenant cannot claim another app's uuid");
    assert.match(String(steal.body.error), /^uuid: already belongs/);
    const vault = await call(node.url, "GET", "/api/v1/apps/vault", { token: KEY });
    assert.equal(vault.body.tenant, "globex");
  });

  it("forged, unsigned and expired tenant tokens are 401", async () => {
    const forged = await issueTenantToken(await signingKey(), {
      tenant: "globex",
      subject: "x",
      ttlSeconds: 60,
    });
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(
      JSON.stringify({ sub: "x", network: "globex", iss: "tabbify-auth", exp: 4e9 }),
    ).toString("base64url")}.`;
    const expired = await new SignJWT({ network: "acme" })
      .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
      .setSubject("dev")
      .setIssuer("tabbify-auth")
      .setIssuedAt(1_000)
      .setExpirationTime(2_000)
      .sign(key.privateKey);
    for (const token of [forged, unsigned, expired, `${acme}x`]) {
      const res = await call(node.url, "GET", "/api/v1/apps", { token });
      assert.equal(res.status, 401, res.text);
      assert.ok(!res.text.includes(token));
    }
  });

  it("hostile refs and bodies are refused without a 500 and change nothing", async () => {
    const before = (await fetchAudit(node.url, KEY)).length;
    const refs = ["x'%20OR%20'1'%3D'1", "..%2F..%2Fetc", "%00", "a".repeat(300), "vault%3Bdrop", "VAULT"];
    for (const ref of refs) {
      const get = await call(node.url, "GET", `/api/v1/apps/${ref}`, { token: KEY });
      assert.ok(get.status >= 400 && get.status < 500, `GET ${ref}: ${get.status}`);
      const put = await call(node.url, "PUT", `/api/v1/apps/${ref}`, {
        token: KEY,
        body: { tenant: "acme" },
      });
      assert.ok(put.status >= 400 && put.status < 500, `PUT ${ref}: ${put.status}`);
    }
    const proto = await fetch(`${node.url}/api/v1/apps/acme-web`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/merge-patch+json" },
      body: '{"__proto__": {"tenant": "globex"}, "labels": {"constructor": "x"}}',
    });
    assert.equal(proto.status, 400);
    const huge = await call(node.url, "PUT", "/api/v1/apps/huge", {
      token: KEY,
      body: { tenant: "acme", description: "x".repeat(2_000_000) },
    });
    assert.equal(huge.status, 413);
    assert.equal((await call(node.url, "GET", "/api/v1/audit?limit=1000000", { token: KEY })).status, 400);
    const events = await fetchAudit(node.url, KEY);
    assert.equal(events.length, before);
    assert.equal(firstBrokenSeq(events), undefined);
  });
});
