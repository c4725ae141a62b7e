import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { SignJWT } from "jose";
import { loadOrCreateSigningKey } from "./keys.js";
import { buildAuthApp } from "./server.js";
import { issueTenantToken } from "./tenant-token.js";

const root = await mkdtemp(join(tmpdir(), "tabbify-auth-server-"));
const key = await loadOrCreateSigningKey(join(root, "key"));
const app = buildAuthApp({ key });
after(async () => {
  await app.close();
  await rm(root, { recursive: true, force: true });
});

const validate = (payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({
    method: "POST",
    url: "/v1/validate",
    headers: { "content-type": "application/json", ...headers },
    payload: typeof payload === "string" ? payload : JSON.stringify(payload),
  });

function assertError(
  res: { statusCode: number; json(): unknown },
  status: number,
  code: string,
  secret?: string,
) {
  assert.equal(res.statusCode, status);
  const body = res.json() as { error: unknown; code: unknown };
  assert.equal(body.code, code);
  assert.equal(typeof body.error, "string");
  if (secret) assert.ok(!(body.error as string).includes(secret), "error must not echo the token");
}

test("GET /health", async () => {
  const res = await app.inject({ method: "GET", url: "/health" });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { status: "ok" });
});

test("validate: a good token → subject, network, tenant, expires_at", async () => {
  const token = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 600 });
  const res = await validate({ token });
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.subject, "alice");
  assert.equal(body.network, "acme");
  assert.equal(body.tenant, "acme");
  assert.ok(Math.abs(body.expires_at - (Math.floor(Date.now() / 1000) + 600)) <= 2);
});

test("validate: without a network claim the tenant is the subject and network is null", async () => {
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("globex")
    .setIssuer("tabbify-auth")
    .setExpirationTime("1h")
    .sign(key.privateKey);
  const res = await validate({ token });
  assert.equal(res.statusCode, 200);
  assert.equal(res.json().tenant, "globex");
  assert.equal(res.json().network, null);
});

test("validate: an expired token → 401 TOKEN_EXPIRED", async () => {
  const token = await new SignJWT({ network: "acme" })
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("alice")
    .setIssuer("tabbify-auth")
    .setExpirationTime(Math.floor(Date.now() / 1000) - 5)
    .sign(key.privateKey);
  assertError(await validate({ token }), 401, "TOKEN_EXPIRED", token);
});

test("validate: garbage and forged tokens → 401 TOKEN_INVALID", async () => {
  assertError(await validate({ token: "garbage.token.here" }), 401, "TOKEN_INVALID", "garbage.token.here");
  const otherKey = await loadOrCreateSigningKey(join(root, "other"));
  const forged = await issueTenantToken(otherKey, { tenant: "acme", subject: "mallory", ttlSeconds: 600 });
  assertError(await validate({ token: forged }), 401, "TOKEN_INVALID", forged);
});

test("validate: missing or non-string token → 400 BAD_REQUEST", async () => {
  assertError(await validate({}), 400, "BAD_REQUEST");
  assertError(await validate({ token: "" }), 400, "BAD_REQUEST");
  assertError(await validate({ token: 42 }), 400, "BAD_REQUEST");
  assertError(await validate(["token"]), 400, "BAD_REQUEST");
  assertError(await validate("null"), 400, "BAD_REQUEST");
  assertError(await validate({ token: "x".repeat(20_000) }), 400, "BAD_REQUEST");
  const noBody = await app.inject({ method: "POST", url: "/v1/validate" });
  assertError(noBody, 400, "BAD_REQUEST");
});

test("validate: invalid JSON → 400 BAD_REQUEST without echoing the body", async () => {
  const res = await validate('{"token": "secret-ish-value');
  assertError(res, 400, "BAD_REQUEST", "secret-ish-value");
  assertError(await validate(""), 400, "BAD_REQUEST");
});

test("validate: wrong content type → 415, oversized body → 413, unknown route → 404", async () => {
  const form = await app.inject({
    method: "POST",
    url: "/v1/validate",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    payload: "token=abc",
  });
  assertError(form, 415, "UNSUPPORTED_MEDIA_TYPE");
  // fastify parses text/plain itself; a string body is still not a {"token"} object
  const text = await app.inject({
    method: "POST",
    url: "/v1/validate",
    headers: { "content-type": "text/plain" },
    payload: "token",
  });
  assertError(text, 400, "BAD_REQUEST");
  assertError(await validate({ token: "x".repeat(100_000) }), 413, "PAYLOAD_TOO_LARGE");
  assertError(await app.inject({ method: "GET", url: "/v1/nothing" }), 404, "NOT_FOUND");
});
