// The attacks on the registry that held when issue 9 was filed, kept so they keep holding:
// tenant isolation (acme vs globex), forged registry and tenant tokens (wrong key, alg none,
// expired, tampered), request smuggling (conflicting Content-Length / Transfer-Encoding) and path
// traversal. SIGKILL mid-upload is registry-sigkill-upload.test.ts.
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { loadOrCreateSigningKey } from "../../src/auth/keys.js";
import { RegistryTokens } from "../../src/auth/registry-token.js";
import { issueTenantToken } from "../../src/auth/tenant-token.js";
import { sleep } from "../../src/core/sleep.js";
import {
  basicAuth,
  bearerFor,
  call,
  errorCode,
  type Headers,
  pushImage,
  rawCall,
  registryToken,
  sha256,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";
import { tempDir } from "../support/tools.js";

const secret = randomBytes(32);
let auth: TestAuth;
let reg: TestRegistry;
let acmeJwt: string;
let globexJwt: string;
let acme: Headers;
let globex: Headers;

before(async () => {
  auth = await startTestAuth();
  // The test knows the registry's token secret, so it can sign exactly the tokens it tampers with.
  reg = await startTestRegistry({ authUrl: auth.url, tokens: new RegistryTokens({ secret }) });
  acmeJwt = await auth.jwt("acme");
  globexJwt = await auth.jwt("globex", { subject: "bob" });
  const everything = (...repos: string[]) => repos.map((r) => `repository:${r}:pull,push,delete`);
  acme = await bearerFor(reg.url, acmeJwt, everything("acme/app", "globex/secret"));
  globex = await bearerFor(reg.url, globexJwt, everything("globex/secret", "acme/app"));
  await pushImage(reg.url, "acme/app", "v1", { headers: acme });
  await pushImage(reg.url, "globex/secret", "v1", { headers: globex });
});

after(async () => {
  await reg?.close();
  await auth?.close();
});

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const parts = (jwt: string) => jwt.split(".") as [string, string, string];
const payloadOf = (jwt: string) =>
  JSON.parse(Buffer.from(parts(jwt)[1], "base64url").toString()) as Record<string, unknown>;

describe("tenant isolation", () => {
  it("asking for another tenant's repository grants nothing, and every request there is 403", async () => {
    for (const [headers, other] of [
      [acme, "globex/secret"],
      [globex, "acme/app"],
    ] as const) {
      for (const [method, path] of [
        ["GET", `/v2/${other}/manifests/v1`],
        ["HEAD", `/v2/${other}/manifests/v1`],
        ["GET", `/v2/${other}/tags/list`],
        ["POST", `/v2/${other}/blobs/uploads/`],
        ["PUT", `/v2/${other}/manifests/v2`],
        ["DELETE", `/v2/${other}/manifests/v1`],
      ] as const) {
        const r = await call(reg.url, path, { method, headers });
        assert.equal(r.status, 403, `${method} ${path}`);
        if (method !== "HEAD") assert.equal(errorCode(r), "DENIED");
      }
      // The catalog answers, but with none of the other tenant's names.
      const catalog = await call(reg.url, "/v2/_catalog", { headers });
      assert.equal(catalog.status, 200);
      assert.doesNotMatch(catalog.body.toString(), new RegExp(other.split("/")[0]!));
    }
    // Both images are intact.
    assert.equal((await call(reg.url, "/v2/acme/app/manifests/v1", { headers: acme })).status, 200);
    assert.equal((await call(reg.url, "/v2/globex/secret/manifests/v1", { headers: globex })).status, 200);
  });

  it("a cross-tenant mount is denied and mounts nothing", async () => {
    const layer = await call(reg.url, "/v2/globex/secret/manifests/v1", { headers: globex });
    const digest = (layer.json() as { layers: { digest: string }[] }).layers[0]!.digest;
    const mount = await call(reg.url, `/v2/acme/app/blobs/uploads/?mount=${digest}&from=globex/secret`, {
      method: "POST",
      headers: acme,
    });
    assert.equal(mount.status, 403);
    assert.equal(
      (await call(reg.url, `/v2/acme/app/blobs/${digest}`, { method: "HEAD", headers: acme })).status,
      404,
    );
  });
});

describe("forged tokens are 401", () => {
  const attempt = async (token: string, what: string) => {
    const r = await call(reg.url, "/v2/acme/app/manifests/v1", {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(r.status, 401, what);
    assert.equal(errorCode(r), "UNAUTHORIZED", what);
    assert.ok(!r.body.toString().includes(token), `${what}: the token is not echoed`);
  };

  it("registry tokens: wrong key, alg none, expired, tampered claims", async () => {
    const valid = await registryToken(reg.url, acmeJwt, ["repository:acme/app:pull"]);
    const now = Math.floor(Date.now() / 1000);
    const identity = { subject: "mallory", tenant: "acme", expiresAt: now + 600 };
    const access = [{ type: "repository", name: "acme/app", actions: ["pull", "push", "delete"] }];

    await attempt(
      (await new RegistryTokens().mint(identity, { service: "tabbify-registry", access })).token,
      "wrong key",
    );

    const claims = { ...payloadOf(valid), access };
    await attempt(`${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`, "alg none");
    await attempt(
      `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.${parts(valid)[2]}`,
      "alg none, old signature",
    );

    const past = new RegistryTokens({ secret, now: () => now - 3600 });
    const expired = await past.mint(
      { ...identity, expiresAt: now + 600 },
      { service: "tabbify-registry", access },
    );
    await attempt(expired.token, "expired");

    // The payload widened (more actions, another tenant) under the original signature.
    const [header, , signature] = parts(valid);
    await attempt(`${header}.${b64(claims)}.${signature}`, "tampered access");
    await attempt(
      `${header}.${b64({ ...payloadOf(valid), tenant: "globex" })}.${signature}`,
      "tampered tenant",
    );
    // A correct HMAC over a header that names another algorithm is still refused.
    const hs512 = `${b64({ alg: "HS512", typ: "JWT" })}.${b64(claims)}`;
    await attempt(`${hs512}.${createHmac("sha512", secret).update(hs512).digest("base64url")}`, "alg HS512");
    // The real token still works: the refusals were about the forgeries.
    assert.equal(
      (await call(reg.url, "/v2/acme/app/manifests/v1", { headers: { authorization: `Bearer ${valid}` } }))
        .status,
      200,
    );
  });

  it("tenant JWTs at /auth/token: wrong key, alg none, expired, tampered", async () => {
    const dir = await tempDir("tabbify-forger");
    try {
      const forgerKey = await loadOrCreateSigningKey(dir.path);
      const forged = await issueTenantToken(forgerKey, {
        tenant: "acme",
        subject: "mallory",
        ttlSeconds: 3600,
      });
      const [header, payload, signature] = parts(acmeJwt);
      const widened = b64({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), network: "globex" });
      const expired = await auth.jwt("acme", { ttlSeconds: 1 });
      await sleep(2100);
      for (const [jwt, what] of [
        [forged, "wrong key"],
        [`${b64({ alg: "none", typ: "JWT" })}.${payload}.`, "alg none"],
        [expired, "expired"],
        [`${header}.${widened}.${signature}`, "tampered network"],
      ] as const) {
        const r = await call(reg.url, "/auth/token?scope=repository:acme/app:pull", {
          headers: { authorization: basicAuth(jwt) },
        });
        assert.equal(r.status, 401, what);
        assert.equal(errorCode(r), "UNAUTHORIZED", what);
      }
    } finally {
      await dir.remove();
    }
  });
});

/** Writes raw bytes on one connection and collects everything the server sends until it closes. */
function rawExchange(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.end(bytes));
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (c: string) => {
      text += c;
    });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });
}

describe("request smuggling", () => {
  const smuggled = (token: string) =>
    `GET /v2/globex/secret/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`;

  it("Content-Length with Transfer-Encoding is refused (400) and the smuggled request never runs", async () => {
    const token = acme.authorization!.slice("Bearer ".length);
    const body = `0\r\n\r\n${smuggled(token)}`;
    const answer = await rawExchange(
      reg.url,
      `POST /v2/acme/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
    );
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["400"], answer.slice(0, 500));
  });

  it("two different Content-Lengths are refused (400)", async () => {
    const token = acme.authorization!.slice("Bearer ".length);
    const answer = await rawExchange(
      reg.url,
      `POST /v2/acme/app/blobs/uploads/?digest=${sha256("abcd")} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd${smuggled(token)}`,
    );
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["400"], answer.slice(0, 500));
  });
});

describe("path traversal", () => {
  it("paths that climb, encode or double their separators are refused and read nothing", async () => {
    const paths = [
      "/v2/acme/../globex/secret/manifests/v1",
      "/v2/acme/app/../../globex/secret/manifests/v1",
      "/v2/acme/%2e%2e/globex/secret/manifests/v1",
      "/v2/acme/%2E%2E%2Fglobex/secret/manifests/v1",
      "/v2/acme/app/manifests/..%2F..%2F..%2Fglobex%2Fsecret%2F_manifests%2Ftags%2Fv1%2Fcurrent%2Flink",
      "/v2/acme/app/blobs/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
      "/v2/acme/app/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
      "/v2/acme/app/blobs/uploads/..%2F..%2F..%2Fetc",
      "/v2/acme//globex/secret/manifests/v1",
      "/v2/acme/app%2F..%2F..%2Fglobex%2Fsecret/manifests/v1",
      "/v2/acme\\..\\globex/secret/manifests/v1",
    ];
    for (const path of paths) {
      const r = await rawCall(reg.url, "GET", path, undefined, acme);
      assert.ok([400, 403, 404].includes(r.status), `${path}: ${r.status}`);
      assert.ok(!r.body.toString().includes("root:"), path);
    }
    // Nothing the attempts named was created beside the tenants' repositories.
    assert.deepEqual((await readdir(`${reg.dataDir}/repositories`)).sort(), ["acme", "globex"]);
  });
});
