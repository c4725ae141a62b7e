// Issue 9 §5: registry tokens honour their scope. A token carries the Docker token format's
// `access` list; the registry checks every request against it (pull for reads, push for writes,
// delete for DELETE), scopes a tenant may not have are dropped from the grant, and a request
// outside the token's access is 401 with an `insufficient_scope` challenge naming the scope.
// The node's pull token is pull-only for one repository; its push token (the builder's) is
// pull+push for that repository.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { tenantRegistryAccess } from "../../src/node/registry-access.js";
import type { RegistryAccess } from "../../src/pipeline/executor.js";
import {
  basicAuth,
  bearerFor,
  call,
  errorCode,
  type Headers,
  pushBlob,
  pushImage,
  registryToken,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";

let auth: TestAuth;
let reg: TestRegistry;
let acmeJwt: string;
let host: string;

before(async () => {
  auth = await startTestAuth();
  reg = await startTestRegistry({ authUrl: auth.url });
  acmeJwt = await auth.jwt("acme");
  host = new URL(reg.url).host;
  // Content to read: acme/app1 and acme/app2 each hold an image.
  const writer = await bearerFor(reg.url, acmeJwt, [
    "repository:acme/app1:pull,push",
    "repository:acme/app2:pull,push",
  ]);
  await pushImage(reg.url, "acme/app1", "v1", { headers: writer });
  await pushImage(reg.url, "acme/app2", "v1", { headers: writer });
});

after(async () => {
  await reg?.close();
  await auth?.close();
});

function challenge(scope: string, insufficient = true): string {
  return `Bearer realm="http://${host}/auth/token",service="tabbify-registry",scope="${scope}"${insufficient ? ',error="insufficient_scope"' : ""}`;
}

async function assertInsufficient(r: Awaited<ReturnType<typeof call>>, scope: string, what: string) {
  assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString()}`);
  assert.equal(errorCode(r), "UNAUTHORIZED", what);
  assert.equal(r.headers.get("www-authenticate"), challenge(scope), what);
}

describe("the grant", () => {
  it("carries the Docker access claim: what was asked, less what the tenant may not have", async () => {
    const token = await registryToken(reg.url, acmeJwt, [
      "repository:acme/app1:pull",
      "repository:acme/app2:pull,push",
      "repository:acme/app2:delete repository:globex/app:pull,push",
      "registry:catalog:*",
      "repository:acme/app3:*",
    ]);
    assert.deepEqual(decodeJwt(token).access, [
      { type: "repository", name: "acme/app1", actions: ["pull"] },
      { type: "repository", name: "acme/app2", actions: ["pull", "push", "delete"] },
      { type: "repository", name: "acme/app3", actions: ["pull", "push", "delete"] },
    ]);
    // Dropped, not refused: a request naming only what the tenant may not have still gets a token.
    const none = await registryToken(reg.url, acmeJwt, ["repository:globex/app:pull"]);
    assert.deepEqual(decodeJwt(none).access, []);
  });

  it("a scope that does not parse is 400 SCOPE_INVALID, and no token", async () => {
    for (const scope of [
      "repository:acme/app1",
      "repository",
      "repo sitory:acme/x:pull",
      "repository:acme/x:PULL",
    ]) {
      const r = await call(reg.url, `/auth/token?scope=${encodeURIComponent(scope)}`, {
        headers: { authorization: basicAuth(acmeJwt) },
      });
      assert.equal(r.status, 400, scope);
      assert.equal(errorCode(r), "SCOPE_INVALID", scope);
    }
  });

  it("containerd's OAuth2 form carries its scope in the body", async () => {
    const r = await call(reg.url, "/auth/token", {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "password",
        username: "x",
        password: acmeJwt,
        service: "tabbify-registry",
        scope: "repository:acme/app1:pull",
      }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(r.status, 200);
    const token = (r.json() as { access_token: string }).access_token;
    assert.deepEqual(decodeJwt(token).access, [{ type: "repository", name: "acme/app1", actions: ["pull"] }]);
  });
});

describe("each request is checked against the token's access", () => {
  it("a pull token pulls its repository and nothing else; every refusal names the scope to ask for", async () => {
    const pull = await bearerFor(reg.url, acmeJwt, ["repository:acme/app1:pull"]);
    assert.equal(
      (await call(reg.url, "/v2/acme/app1/manifests/v1", { method: "HEAD", headers: pull })).status,
      200,
    );
    assert.equal((await call(reg.url, "/v2/acme/app1/tags/list", { headers: pull })).status, 200);
    await assertInsufficient(
      await call(reg.url, "/v2/acme/app1/blobs/uploads/", { method: "POST", headers: pull }),
      "repository:acme/app1:push",
      "upload",
    );
    await assertInsufficient(
      await call(reg.url, "/v2/acme/app1/manifests/v2", {
        method: "PUT",
        body: "{}",
        headers: { ...pull, "content-type": "application/vnd.oci.image.manifest.v1+json" },
      }),
      "repository:acme/app1:push",
      "manifest PUT",
    );
    await assertInsufficient(
      await call(reg.url, "/v2/acme/app1/manifests/v1", { method: "DELETE", headers: pull }),
      "repository:acme/app1:delete",
      "DELETE",
    );
    await assertInsufficient(
      await call(reg.url, "/v2/acme/app2/manifests/v1", { headers: pull }),
      "repository:acme/app2:pull",
      "another repository of the same tenant",
    );
    const globex = await call(reg.url, "/v2/globex/app/tags/list", { headers: pull });
    assert.equal(globex.status, 403, "another tenant is DENIED: no token acme can get would do");
    assert.equal(errorCode(globex), "DENIED");
    assert.equal(
      (await call(reg.url, "/v2/acme/app1/manifests/v1", { headers: pull })).status,
      200,
      "still pulls",
    );
  });

  it("a token without scope (docker login's) passes GET /v2/ and nothing else", async () => {
    const login = await bearerFor(reg.url, acmeJwt, []);
    assert.equal((await call(reg.url, "/v2/", { headers: login })).status, 200);
    await assertInsufficient(
      await call(reg.url, "/v2/acme/app1/tags/list", { headers: login }),
      "repository:acme/app1:pull",
      "tags",
    );
  });

  it("without a token, the challenge names the scope the request needs, without an error", async () => {
    const r = await call(reg.url, "/v2/acme/app1/blobs/uploads/", { method: "POST" });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("www-authenticate"), challenge("repository:acme/app1:push", false));
  });

  it("DELETE needs delete; pull,push does not grant it", async () => {
    const pushPull = await bearerFor(reg.url, acmeJwt, ["repository:acme/app2:pull,push"]);
    const image = await pushImage(reg.url, "acme/app2", "doomed", { headers: pushPull });
    await assertInsufficient(
      await call(reg.url, `/v2/acme/app2/manifests/${image.digest}`, { method: "DELETE", headers: pushPull }),
      "repository:acme/app2:delete",
      "DELETE with pull,push",
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/app2/blobs/${image.layerDigest}`, {
        method: "DELETE",
        headers: pushPull,
      }),
      "repository:acme/app2:delete",
      "blob DELETE with pull,push",
    );
    const deleter = await bearerFor(reg.url, acmeJwt, ["repository:acme/app2:delete"]);
    const del = await call(reg.url, `/v2/acme/app2/manifests/${image.digest}`, {
      method: "DELETE",
      headers: deleter,
    });
    assert.equal(del.status, 202);
  });

  it("cancelling one's own upload session is part of pushing", async () => {
    const pusher = await bearerFor(reg.url, acmeJwt, ["repository:acme/app1:push"]);
    const start = await call(reg.url, "/v2/acme/app1/blobs/uploads/", { method: "POST", headers: pusher });
    assert.equal(start.status, 202);
    const cancel = await call(reg.url, start.headers.get("location")!, { method: "DELETE", headers: pusher });
    assert.equal(cancel.status, 204);
  });

  it("a mount needs pull on its source: without it no blob is mounted, a plain session opens", async () => {
    const source = await bearerFor(reg.url, acmeJwt, ["repository:acme/src:pull,push"]);
    const digest = await pushBlob(reg.url, "acme/src", "mount me", source);
    const destOnly = await bearerFor(reg.url, acmeJwt, ["repository:acme/dest:pull,push"]);
    const refused = await call(reg.url, `/v2/acme/dest/blobs/uploads/?mount=${digest}&from=acme/src`, {
      method: "POST",
      headers: destOnly,
    });
    assert.equal(refused.status, 202, "a plain upload session, the spec's answer to a mount not done");
    const head = await call(reg.url, `/v2/acme/dest/blobs/${digest}`, { method: "HEAD", headers: destOnly });
    assert.equal(head.status, 404, "nothing was mounted");
    const both = await bearerFor(reg.url, acmeJwt, [
      "repository:acme/dest:pull,push",
      "repository:acme/src:pull",
    ]);
    const mounted = await call(reg.url, `/v2/acme/dest/blobs/uploads/?mount=${digest}&from=acme/src`, {
      method: "POST",
      headers: both,
    });
    assert.equal(mounted.status, 201);
  });

  it("a token minted for another service is refused", async () => {
    const other = await startTestRegistry({ authUrl: auth.url, service: "elsewhere" });
    try {
      const foreign = await call(other.url, "/auth/token?service=elsewhere&scope=repository:acme/app1:pull", {
        headers: { authorization: basicAuth(acmeJwt) },
      });
      const token = (foreign.json() as { token: string }).token;
      const r = await call(reg.url, "/v2/", { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 401);
    } finally {
      await other.close();
    }
  });
});

describe("the node's tokens for a deploy", () => {
  let access: RegistryAccess;
  const app = randomUUID();
  const sibling = randomUUID();

  before(async () => {
    access = await tenantRegistryAccess({
      registryHost: host,
      registryUrl: reg.url,
      authDataDir: auth.dataDir,
    });
    const writer = await bearerFor(reg.url, acmeJwt, [`repository:acme/${sibling}:pull,push`]);
    await pushImage(reg.url, `acme/${sibling}`, "v1", { headers: writer });
  });

  const bearer = (token: string): Headers => ({ authorization: `Bearer ${token}` });

  it("the push token (the builder's) is pull and push on that one repository", async () => {
    const token = await access.pushToken("acme", app);
    assert.deepEqual(decodeJwt(token).access, [
      { type: "repository", name: `acme/${app}`, actions: ["pull", "push"] },
    ]);
    const image = await pushImage(reg.url, `acme/${app}`, "v1", { headers: bearer(token) });
    assert.equal(
      (await call(reg.url, `/v2/acme/${app}/manifests/v1`, { headers: bearer(token) })).status,
      200,
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/${sibling}/blobs/uploads/`, { method: "POST", headers: bearer(token) }),
      `repository:acme/${sibling}:push`,
      "push to a sibling app",
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/${sibling}/manifests/v1`, { headers: bearer(token) }),
      `repository:acme/${sibling}:pull`,
      "pull a sibling app",
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/${app}/manifests/${image.digest}`, {
        method: "DELETE",
        headers: bearer(token),
      }),
      `repository:acme/${app}:delete`,
      "delete",
    );
  });

  it("an app uuid in upper case gets the token for the lowercase repository the builder pushes to", async () => {
    const token = await access.pullToken!("ACME", app.toUpperCase());
    assert.deepEqual(decodeJwt(token).access, [
      { type: "repository", name: `acme/${app}`, actions: ["pull"] },
    ]);
  });

  it("the pull token is pull-only on that one repository", async () => {
    const token = await access.pullToken!("acme", app);
    assert.deepEqual(decodeJwt(token).access, [
      { type: "repository", name: `acme/${app}`, actions: ["pull"] },
    ]);
    assert.equal(
      (await call(reg.url, `/v2/acme/${app}/manifests/v1`, { headers: bearer(token) })).status,
      200,
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/${app}/blobs/uploads/`, { method: "POST", headers: bearer(token) }),
      `repository:acme/${app}:push`,
      "push with the pull token",
    );
    await assertInsufficient(
      await call(reg.url, `/v2/acme/${sibling}/manifests/v1`, { headers: bearer(token) }),
      `repository:acme/${sibling}:pull`,
      "pull another app of the same tenant",
    );
    const globex = await call(reg.url, `/v2/globex/${app}/manifests/v1`, { headers: bearer(token) });
    assert.equal(globex.status, 403);
  });
});
