// The registry's auth gate (issue 2 §3) against a real auth service in-process: the bearer
// challenge, /auth/token (Basic, bearer, OAuth2 form), local verification, tenant namespaces,
// and bad tokens (expired, forged, another tenant's).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadOrCreateSigningKey } from "../src/auth/keys.js";
import { RegistryTokens } from "../src/auth/registry-token.js";
import { issueTenantToken } from "../src/auth/tenant-token.js";
import {
  basicAuth as basic,
  bearerFor,
  call,
  errorCode,
  pushBlob,
  pushImage,
  rawCall,
  registryToken as scopedToken,
  sha256,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "./registry-helpers.js";

let auth: TestAuth;
let authUrl: string;
let authDir: string;
let reg: TestRegistry;
let acmeJwt: string;
let globexJwt: string;

before(async () => {
  auth = await startTestAuth();
  authUrl = auth.url;
  authDir = auth.dataDir;
  acmeJwt = await auth.jwt("acme");
  globexJwt = await auth.jwt("globex", { subject: "bob" });
  reg = await startTestRegistry({ authUrl });
});

after(async () => {
  await reg.close();
  await auth.close();
});

const pushPull = (...repos: string[]) => repos.map((r) => `repository:${r}:pull,push`);

function registryToken(jwt: string, scopes = pushPull("acme/app")): Promise<string> {
  return scopedToken(reg.url, jwt, scopes);
}

describe("challenge and token exchange", () => {
  it("a /v2 request without a token is 401 UNAUTHORIZED with a Bearer challenge", async () => {
    const base = await call(reg.url, "/v2/");
    assert.equal(base.status, 401);
    assert.equal(errorCode(base), "UNAUTHORIZED");
    const host = new URL(reg.url).host;
    assert.equal(
      base.headers.get("www-authenticate"),
      `Bearer realm="http://${host}/auth/token",service="tabbify-registry"`,
    );
    const repo = await call(reg.url, "/v2/acme/app/tags/list");
    assert.equal(repo.status, 401);
    assert.equal(
      repo.headers.get("www-authenticate"),
      `Bearer realm="http://${host}/auth/token",service="tabbify-registry",scope="repository:acme/app:pull"`,
    );
  });

  it("/auth/token takes the tenant JWT as Basic password, as bearer, or as an OAuth2 password grant", async () => {
    const viaBasic = await call(reg.url, "/auth/token?service=tabbify-registry", {
      headers: { authorization: basic(acmeJwt) },
    });
    assert.equal(viaBasic.status, 200);
    const grant = viaBasic.json() as Record<string, unknown>;
    assert.equal(typeof grant.token, "string");
    assert.equal(grant.access_token, grant.token);
    assert.equal(grant.expires_in, 300);
    assert.ok(!Number.isNaN(Date.parse(String(grant.issued_at))));

    const viaBearer = await call(reg.url, "/auth/token", { headers: { authorization: `Bearer ${acmeJwt}` } });
    assert.equal(viaBearer.status, 200);

    const viaForm = await call(reg.url, "/auth/token", {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "password",
        username: "x",
        password: acmeJwt,
        service: "s",
      }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(viaForm.status, 200);
    assert.equal(typeof (viaForm.json() as { access_token: string }).access_token, "string");

    const none = await call(reg.url, "/auth/token");
    assert.equal(none.status, 401);
    assert.equal(errorCode(none), "UNAUTHORIZED");
  });

  it("verifies registry tokens locally: no call to auth after the exchange", async () => {
    const token = await registryToken(acmeJwt);
    const callsBefore = auth.calls();
    for (let i = 0; i < 5; i++) {
      const r = await call(reg.url, "/v2/", { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200);
    }
    await pushBlob(reg.url, "acme/app", "hot path", { authorization: `Bearer ${token}` });
    assert.equal(auth.calls(), callsBefore);
  });
});

describe("tenant namespaces", () => {
  it("acme pushes and pulls under acme/, is denied globex/ (403 DENIED), lists only acme/ in _catalog", async () => {
    const headers = await bearerFor(reg.url, acmeJwt, [
      ...pushPull("acme/app", "globex/app"),
      "registry:catalog:*",
    ]);
    const image = await pushImage(reg.url, "acme/app", "v1", { headers });
    const get = await call(reg.url, "/v2/acme/app/manifests/v1", { headers });
    assert.equal(get.status, 200);
    assert.equal(get.headers.get("docker-content-digest"), image.digest);

    for (const [method, path] of [
      ["GET", "/v2/globex/app/tags/list"],
      ["GET", "/v2/globex/app/manifests/v1"],
      ["POST", "/v2/globex/app/blobs/uploads/"],
      ["PUT", "/v2/globex/app/manifests/v1"],
      ["GET", "/v2/acme"],
    ] as const) {
      const r = await call(reg.url, path, { method, headers });
      assert.ok(r.status === 403 || r.status === 404, `${method} ${path}: ${r.status}`);
      if (path !== "/v2/acme") {
        assert.equal(r.status, 403, `${method} ${path}`);
        assert.equal(errorCode(r), "DENIED", `${method} ${path}`);
      }
    }
    const catalog = await call(reg.url, "/v2/_catalog", { headers });
    assert.equal(catalog.status, 200);
    for (const name of (catalog.json() as { repositories: string[] }).repositories) {
      assert.match(name, /^acme\//, "only acme's repositories are listed");
    }
    // A path that climbs out of the tenant's prefix is refused, not resolved.
    const climb = await rawCall(reg.url, "GET", "/v2/acme/../globex/app/tags/list");
    assert.ok(climb.status === 401 || climb.status === 403 || climb.status === 400);
  });

  it("globex cannot read or write acme (403), and a cross-tenant mount is denied with nothing mounted", async () => {
    const acme = await bearerFor(reg.url, acmeJwt, pushPull("acme/secret", "acme/copy"));
    const globex = await bearerFor(reg.url, globexJwt, pushPull("globex/stolen", "acme/secret"));
    const digest = await pushBlob(reg.url, "acme/secret", "acme only", acme);
    const read = await call(reg.url, `/v2/acme/secret/blobs/${digest}`, { headers: globex });
    assert.equal(read.status, 403);
    assert.equal(errorCode(read), "DENIED");
    const write = await call(reg.url, `/v2/acme/secret/blobs/uploads/?digest=${sha256("x")}`, {
      method: "POST",
      body: "x",
      headers: { ...globex, "content-type": "application/octet-stream" },
    });
    assert.equal(write.status, 403);
    const mount = await call(reg.url, `/v2/globex/stolen/blobs/uploads/?mount=${digest}&from=acme/secret`, {
      method: "POST",
      headers: globex,
    });
    assert.equal(mount.status, 403);
    assert.equal(errorCode(mount), "DENIED");
    const head = await call(reg.url, `/v2/globex/stolen/blobs/${digest}`, {
      method: "HEAD",
      headers: globex,
    });
    assert.equal(head.status, 404);
    // Within one tenant, mounting works.
    const own = await call(reg.url, `/v2/acme/copy/blobs/uploads/?mount=${digest}&from=acme/secret`, {
      method: "POST",
      headers: acme,
    });
    assert.equal(own.status, 201);
  });
});

describe("bad tokens are 401 and the server keeps serving", () => {
  it("refuses a forged tenant JWT and an expired one at /auth/token", async () => {
    const otherDir = await mkdtemp(join(tmpdir(), "tabbify-registry-forger-"));
    try {
      const forgerKey = await loadOrCreateSigningKey(otherDir);
      const forged = await issueTenantToken(forgerKey, {
        tenant: "acme",
        subject: "mallory",
        ttlSeconds: 3600,
      });
      const r = await call(reg.url, "/auth/token", { headers: { authorization: basic(forged) } });
      assert.equal(r.status, 401);
      assert.equal(errorCode(r), "UNAUTHORIZED");
      assert.ok(!r.body.toString().includes(forged), "the token is not echoed");

      const key = await loadOrCreateSigningKey(authDir);
      const shortLived = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 1 });
      await new Promise((res) => setTimeout(res, 2100));
      const expired = await call(reg.url, "/auth/token", { headers: { authorization: basic(shortLived) } });
      assert.equal(expired.status, 401);
      assert.equal(errorCode(expired), "UNAUTHORIZED");
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it("refuses registry tokens that are garbage, forged, expired, or a raw tenant JWT", async () => {
    const forger = new RegistryTokens();
    const forged = (await forger.mint({ subject: "m", tenant: "acme", expiresAt: Date.now() / 1000 + 600 }))
      .token;
    for (const token of ["garbage", forged, acmeJwt]) {
      const r = await call(reg.url, "/v2/acme/app/tags/list", {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(r.status, 401, token.slice(0, 10));
      assert.equal(errorCode(r), "UNAUTHORIZED");
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
    }
    const basicOnV2 = await call(reg.url, "/v2/", { headers: { authorization: basic(acmeJwt) } });
    assert.equal(basicOnV2.status, 401);
  });

  it("a registry token expires", async () => {
    // Expiry counts whole seconds: a 1 s token issued late in a second is already expired early in
    // the next one. Two seconds keep it valid for the first call on any machine.
    const tokens = new RegistryTokens({ ttlSeconds: 2 });
    const shortReg = await startTestRegistry({ authUrl, tokens });
    try {
      const r = await call(shortReg.url, "/auth/token", { headers: { authorization: basic(acmeJwt) } });
      const token = (r.json() as { token: string }).token;
      assert.equal(
        (await call(shortReg.url, "/v2/", { headers: { authorization: `Bearer ${token}` } })).status,
        200,
      );
      await new Promise((res) => setTimeout(res, 3100));
      const late = await call(shortReg.url, "/v2/", { headers: { authorization: `Bearer ${token}` } });
      assert.equal(late.status, 401);
      assert.equal(errorCode(late), "UNAUTHORIZED");
    } finally {
      await shortReg.close();
    }
  });

  it("still serves after all of that", async () => {
    const token = await registryToken(acmeJwt);
    assert.equal(
      (await call(reg.url, "/v2/", { headers: { authorization: `Bearer ${token}` } })).status,
      200,
    );
  });
});
