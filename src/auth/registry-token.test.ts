import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { decodeJwt } from "jose";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { loadOrCreateSigningKey } from "./keys.js";
import { RegistryTokens } from "./registry-token.js";
import { issueTenantToken } from "./tenant-token.js";
import type { TenantIdentity } from "./types.js";

const root = await mkdtemp(join(tmpdir(), "tabbify-auth-registry-"));
after(() => rm(root, { recursive: true, force: true }));

const t0 = 1_800_000_000;
const alice: TenantIdentity = { subject: "alice", tenant: "acme", network: "acme", expiresAt: t0 + 86400 };

function fakeClock(start: number) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

function rejectsWith(code: string, promise: Promise<unknown>, token?: string) {
  return assert.rejects(promise, (err) => {
    assert.ok(isTabbifyError(err, code), `expected ${code}, got ${String(err)}`);
    if (token) assert.ok(!err.message.includes(token), "error message must not contain the token");
    return true;
  });
}

test("mint → verify roundtrip, with the OCI token response shape", async () => {
  const clock = fakeClock(t0);
  const tokens = new RegistryTokens({ now: clock.read });
  const access = [{ type: "repository", name: "acme/app", actions: ["pull"] }];
  const grant = await tokens.mint(alice, { service: "registry.test", access });
  assert.equal(grant.access_token, grant.token);
  assert.equal(grant.expires_in, 300);
  assert.equal(grant.issued_at, new Date(t0 * 1000).toISOString());
  assert.deepEqual(await tokens.verify(grant.token), {
    subject: "alice",
    tenant: "acme",
    expiresAt: t0 + 300,
    access,
  });
  const claims = decodeJwt(grant.token);
  assert.equal(claims.aud, "registry.test");
  assert.equal(claims.iss, "tabbify-registry");
  assert.deepEqual(claims.access, access, "the Docker token format's access claim");
  assert.deepEqual((await tokens.verify((await tokens.mint(alice)).token)).access, [], "no scope, no access");
});

test("a token minted for another service (aud) is TOKEN_INVALID where the audience is checked", async () => {
  const tokens = new RegistryTokens({ now: fakeClock(t0).read });
  const { token } = await tokens.mint(alice, { service: "elsewhere" });
  await rejectsWith("TOKEN_INVALID", tokens.verify(token, { audience: "registry.test" }), token);
  assert.equal((await tokens.verify(token, { audience: "elsewhere" })).tenant, "acme");
});

test("a token expires after its ttl", async () => {
  const clock = fakeClock(t0);
  const tokens = new RegistryTokens({ now: clock.read, ttlSeconds: 30 });
  const { token, expires_in } = await tokens.mint(alice);
  assert.equal(expires_in, 30);
  clock.now = t0 + 29;
  assert.equal((await tokens.verify(token)).tenant, "acme");
  clock.now = t0 + 31;
  await rejectsWith("TOKEN_EXPIRED", tokens.verify(token), token);
});

test("a token expires with the real clock too (tiny ttl)", async () => {
  const tokens = new RegistryTokens({ ttlSeconds: 1 });
  const { token } = await tokens.mint({ ...alice, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
  await tokens.verify(token);
  await sleep(2100);
  await rejectsWith("TOKEN_EXPIRED", tokens.verify(token), token);
});

test("a registry token never outlives the tenant token it came from", async () => {
  const clock = fakeClock(t0);
  const tokens = new RegistryTokens({ now: clock.read });
  const grant = await tokens.mint({ ...alice, expiresAt: t0 + 45 });
  assert.equal(grant.expires_in, 45);
  assert.equal((await tokens.verify(grant.token)).expiresAt, t0 + 45);
  await rejectsWith("TOKEN_EXPIRED", tokens.mint({ ...alice, expiresAt: t0 }));
});

test("a token signed with another secret (another process) is TOKEN_INVALID", async () => {
  const clock = fakeClock(t0);
  const ours = new RegistryTokens({ now: clock.read });
  const theirs = new RegistryTokens({ now: clock.read });
  const { token } = await theirs.mint(alice);
  await rejectsWith("TOKEN_INVALID", ours.verify(token), token);
});

test("an explicit secret is shared between instances and must be at least 32 bytes", async () => {
  const secret = new Uint8Array(32).fill(7);
  const clock = fakeClock(t0);
  const { token } = await new RegistryTokens({ secret, now: clock.read }).mint(alice);
  secret.fill(0);
  const verifier = new RegistryTokens({ secret: new Uint8Array(32).fill(7), now: clock.read });
  assert.equal((await verifier.verify(token)).subject, "alice");
  assert.throws(
    () => new RegistryTokens({ secret: new Uint8Array(16) }),
    (err) => isTabbifyError(err, "CONFIG_INVALID"),
  );
  assert.throws(
    () => new RegistryTokens({ ttlSeconds: 0 }),
    (err) => isTabbifyError(err, "CONFIG_INVALID"),
  );
});

test("a token from another issuer is TOKEN_INVALID", async () => {
  const secret = new Uint8Array(32).fill(9);
  const { token } = await new RegistryTokens({ secret, issuer: "elsewhere" }).mint({
    ...alice,
    expiresAt: Math.floor(Date.now() / 1000) + 60,
  });
  await rejectsWith("TOKEN_INVALID", new RegistryTokens({ secret }).verify(token), token);
});

test("a tenant JWT presented as a registry token is TOKEN_INVALID", async () => {
  const key = await loadOrCreateSigningKey(join(root, "key"));
  const tenantJwt = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 600 });
  await rejectsWith("TOKEN_INVALID", new RegistryTokens().verify(tenantJwt), tenantJwt);
  await rejectsWith("TOKEN_INVALID", new RegistryTokens().verify("garbage"));
  await rejectsWith("TOKEN_INVALID", new RegistryTokens().verify(""));
});

test("minting for a tenant that is not one OCI path component is refused", async () => {
  const tokens = new RegistryTokens({ now: () => t0 });
  for (const tenant of ["", "acme/globex", "..", "ACME!"]) {
    await rejectsWith("TOKEN_INVALID", tokens.mint({ ...alice, tenant }));
  }
});
