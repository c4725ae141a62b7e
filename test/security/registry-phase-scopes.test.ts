// Attacks on robot tokens and the tenant catalog (issue 14 §2): a robot asking /auth/token for
// more than its scopes, a robot scope outside its tenant, a validate answer whose scopes cannot
// be read, and catalog paging aimed at another tenant's names.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, it } from "node:test";
import { decodeJwt } from "jose";
import { AuthClient } from "../../src/auth/client.js";
import { robotScopes } from "../../src/auth/registry-scope.js";
import { issueTenantToken } from "../../src/auth/tenant-token.js";
import { isTabbifyError } from "../../src/core/errors.js";
import {
  bearerFor,
  call,
  pushImage,
  registryToken,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";

let auth: TestAuth;
let reg: TestRegistry;

before(async () => {
  auth = await startTestAuth();
  reg = await startTestRegistry({ authUrl: auth.url });
  const acme = await bearerFor(reg.url, await auth.jwt("acme"), ["repository:acme/web:push,pull"]);
  await pushImage(reg.url, "acme/web", "v1", { headers: acme });
  const globex = await bearerFor(reg.url, await auth.jwt("globex"), ["repository:globex/zeta:push,pull"]);
  await pushImage(reg.url, "globex/zeta", "v1", { headers: globex });
});
after(async () => {
  await reg?.close();
  await auth?.close();
});

it("a robot asking /auth/token for more than its scopes gets only what they allow", async () => {
  const robot = await issueTenantToken(auth.key, {
    tenant: "acme",
    subject: "ci-bot",
    ttlSeconds: 600,
    scopes: robotScopes("acme", ["repository:acme/web:pull"]),
  });
  const token = await registryToken(reg.url, robot, [
    "repository:acme/web:*",
    "repository:acme/other:pull,push",
    "repository:globex/zeta:pull",
  ]);
  assert.deepEqual(decodeJwt(token).access, [{ type: "repository", name: "acme/web", actions: ["pull"] }]);
  const del = await call(reg.url, "/v2/acme/web/manifests/v1", {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 403);
  assert.match(del.body.toString(), /repository:acme\/web:delete/);
  assert.equal(
    (await call(reg.url, "/v2/acme/web/manifests/v1", { headers: { authorization: `Bearer ${token}` } }))
      .status,
    200,
  );
});

it("robot scopes outside the tenant, or not repository scopes, are refused at issue time", () => {
  for (const bad of [
    "repository:globex/zeta:pull",
    "registry:catalog:*",
    "repository:acme/web:admin",
    "acme/web",
  ]) {
    assert.throws(
      () => robotScopes("acme", [bad]),
      (err: unknown) => isTabbifyError(err, "SCOPE_INVALID"),
      bad,
    );
  }
});

it("a validate answer with unreadable scopes is not taken as an unlimited token", async () => {
  const fake = http.createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(
      JSON.stringify({ subject: "ci-bot", network: "acme", tenant: "acme", expires_at: 4e9, scopes: "all" }),
    );
  });
  await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  try {
    const client = new AuthClient(`http://127.0.0.1:${(fake.address() as AddressInfo).port}`);
    await assert.rejects(client.validate("x.y.z"), (err: unknown) => isTabbifyError(err, "AUTH_UNAVAILABLE"));
  } finally {
    fake.close();
  }
});

it("catalog paging aimed past another tenant's names shows none of them", async () => {
  const headers = await bearerFor(reg.url, await auth.jwt("acme"), ["registry:catalog:*"]);
  for (const query of [
    "",
    "?n=1",
    "?n=10&last=globex",
    "?n=1&last=acme%2Fweb",
    "?last=globex%2Fz",
    "?n=1&last=zzz",
  ]) {
    const r = await call(reg.url, `/v2/_catalog${query}`, { headers });
    assert.equal(r.status, 200, query);
    const shown = r.body.toString() + (r.headers.get("link") ?? "");
    assert.doesNotMatch(shown, /globex/, query);
  }
  const bad = await call(reg.url, "/v2/_catalog?n=-1&last=globex%2Fzeta", { headers });
  assert.equal(bad.status, 400);
  assert.doesNotMatch(bad.body.toString(), /globex/);
});
