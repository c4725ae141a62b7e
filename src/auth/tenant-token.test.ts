import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { isTabbifyError } from "../core/errors.js";
import { loadOrCreateSigningKey } from "./keys.js";
import { issueTenantToken, verifyTenantToken } from "./tenant-token.js";

const root = await mkdtemp(join(tmpdir(), "tabbify-auth-tenant-"));
after(() => rm(root, { recursive: true, force: true }));
const key = await loadOrCreateSigningKey(join(root, "key"));
const otherKey = await loadOrCreateSigningKey(join(root, "other"));
const now = () => Math.floor(Date.now() / 1000);

function rejectsWith(code: string, token: string) {
  return assert.rejects(verifyTenantToken(key, token), (err) => {
    assert.ok(isTabbifyError(err, code), `expected ${code}, got ${String(err)}`);
    if (token) assert.ok(!err.message.includes(token), "error message must not contain the token");
    return true;
  });
}

test("issue → verify roundtrip carries the seed's claims", async () => {
  const token = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 3600 });
  const identity = await verifyTenantToken(key, token);
  assert.equal(identity.subject, "alice");
  assert.equal(identity.tenant, "acme");
  assert.equal(identity.network, "acme");
  assert.ok(Math.abs(identity.expiresAt - (now() + 3600)) <= 2);
  const claims = decodeJwt(token);
  assert.equal(claims.iss, "tabbify-auth");
  assert.equal(typeof claims.jti, "string");
  assert.equal(typeof claims.iat, "number");
  assert.deepEqual(decodeProtectedHeader(token), { alg: "EdDSA", kid: key.kid, typ: "JWT" });
  const second = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 3600 });
  assert.notEqual(decodeJwt(second).jti, claims.jti);
});

test("an expired token is TOKEN_EXPIRED", async () => {
  const token = await new SignJWT({ network: "acme" })
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("alice")
    .setIssuer("tabbify-auth")
    .setIssuedAt(now() - 7200)
    .setExpirationTime(now() - 3600)
    .sign(key.privateKey);
  await rejectsWith("TOKEN_EXPIRED", token);
});

test("a token signed by another key is TOKEN_INVALID, even when also expired", async () => {
  const forged = await issueTenantToken(otherKey, { tenant: "acme", subject: "mallory", ttlSeconds: 3600 });
  await rejectsWith("TOKEN_INVALID", forged);
  const forgedExpired = await new SignJWT({ network: "acme" })
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("mallory")
    .setIssuer("tabbify-auth")
    .setExpirationTime(now() - 10)
    .sign(otherKey.privateKey);
  await rejectsWith("TOKEN_INVALID", forgedExpired);
});

test("a tampered payload is TOKEN_INVALID", async () => {
  const token = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 3600 });
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  claims.network = "globex";
  const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`;
  await rejectsWith("TOKEN_INVALID", tampered);
});

test("the tenant falls back to sub when there is no network claim", async () => {
  const expiresAt = now() + 60;
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("globex")
    .setIssuer("tabbify-auth")
    .setExpirationTime(expiresAt)
    .sign(key.privateKey);
  const identity = await verifyTenantToken(key, token);
  assert.deepEqual(identity, { subject: "globex", tenant: "globex", expiresAt });
  assert.ok(!("network" in identity));
});

test("tokens with the wrong issuer, no expiry, alg none or a malformed network are TOKEN_INVALID", async () => {
  const base = () =>
    new SignJWT({ network: "acme" }).setProtectedHeader({ alg: "EdDSA" }).setSubject("alice");
  await rejectsWith(
    "TOKEN_INVALID",
    await base()
      .setIssuer("someone-else")
      .setExpirationTime(now() + 60)
      .sign(key.privateKey),
  );
  await rejectsWith("TOKEN_INVALID", await base().setIssuer("tabbify-auth").sign(key.privateKey));
  const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
    JSON.stringify({ sub: "alice", network: "acme", iss: "tabbify-auth", exp: now() + 60 }),
  ).toString("base64url")}.`;
  await rejectsWith("TOKEN_INVALID", unsigned);
  const badNetwork = await new SignJWT({ network: 42 })
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("alice")
    .setIssuer("tabbify-auth")
    .setExpirationTime(now() + 60)
    .sign(key.privateKey);
  await rejectsWith("TOKEN_INVALID", badNetwork);
  await rejectsWith("TOKEN_INVALID", "not-a-jwt");
  await rejectsWith("TOKEN_INVALID", "");
});

test("issuing refuses tenants that are not one OCI path component, empty subjects and bad ttls", async () => {
  for (const tenant of ["", "acme/x", "..", "-acme", "acme-", "a b", "\u212Acme", "acme\n"]) {
    await assert.rejects(
      issueTenantToken(key, { tenant, subject: "alice", ttlSeconds: 60 }),
      (err) => isTabbifyError(err, "TENANT_INVALID"),
      JSON.stringify(tenant),
    );
  }
  await assert.rejects(issueTenantToken(key, { tenant: "acme", subject: " ", ttlSeconds: 60 }), (err) =>
    isTabbifyError(err, "SUBJECT_INVALID"),
  );
  for (const ttlSeconds of [0, -5, 1.5, Number.NaN]) {
    await assert.rejects(issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds }), (err) =>
      isTabbifyError(err, "TTL_INVALID"),
    );
  }
});
