import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { SignJWT } from "jose";
import { isTabbifyError } from "../core/errors.js";
import { AuthClient } from "./client.js";
import { loadOrCreateSigningKey } from "./keys.js";
import { buildAuthApp } from "./server.js";
import { issueTenantToken } from "./tenant-token.js";

const root = await mkdtemp(join(tmpdir(), "tabbify-auth-client-"));
const key = await loadOrCreateSigningKey(join(root, "key"));
const app = buildAuthApp({ key });
let baseUrl = "";

before(async () => {
  baseUrl = await app.listen({ host: "127.0.0.1", port: 0 });
});
after(async () => {
  await app.close();
  await rm(root, { recursive: true, force: true });
});

function rejectsWith(code: string, promise: Promise<unknown>, token?: string) {
  return assert.rejects(promise, (err) => {
    assert.ok(isTabbifyError(err, code), `expected ${code}, got ${String(err)}`);
    if (token) assert.ok(!err.message.includes(token), "error message must not contain the token");
    return true;
  });
}

/** A port that was free a moment ago and has nothing listening now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test("validates a good token against a listening server", async () => {
  const token = await issueTenantToken(key, { tenant: "acme", subject: "alice", ttlSeconds: 600 });
  const identity = await new AuthClient(baseUrl).validate(token);
  assert.equal(identity.subject, "alice");
  assert.equal(identity.tenant, "acme");
  assert.equal(identity.network, "acme");
  assert.ok(identity.expiresAt > Date.now() / 1000);
  // a trailing slash on the base URL makes no difference
  assert.equal((await new AuthClient(`${baseUrl}/`).validate(token)).tenant, "acme");
});

test("a token without a network claim comes back with the subject as tenant and no network", async () => {
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("globex")
    .setIssuer("tabbify-auth")
    .setExpirationTime("1h")
    .sign(key.privateKey);
  const identity = await new AuthClient(baseUrl).validate(token);
  assert.equal(identity.tenant, "globex");
  assert.ok(!("network" in identity));
});

test("401s become TOKEN_EXPIRED or TOKEN_INVALID", async () => {
  const expired = await new SignJWT({ network: "acme" })
    .setProtectedHeader({ alg: "EdDSA" })
    .setSubject("alice")
    .setIssuer("tabbify-auth")
    .setExpirationTime(Math.floor(Date.now() / 1000) - 5)
    .sign(key.privateKey);
  const client = new AuthClient(baseUrl);
  await rejectsWith("TOKEN_EXPIRED", client.validate(expired), expired);
  await rejectsWith("TOKEN_INVALID", client.validate("garbage"), "garbage");
  await rejectsWith("TOKEN_INVALID", client.validate(""));
  await rejectsWith("TOKEN_INVALID", client.validate("x".repeat(20_000)));
});

test("a closed port is AUTH_UNAVAILABLE", async () => {
  const port = await closedPort();
  await rejectsWith(
    "AUTH_UNAVAILABLE",
    new AuthClient(`http://127.0.0.1:${port}`).validate("some-token"),
    "some-token",
  );
});

test("5xx, a non-auth server and a hung server are AUTH_UNAVAILABLE", async () => {
  let mode: "500" | "html" | "hang" = "500";
  const impostor = createServer((_req, res) => {
    if (mode === "500") res.writeHead(500, { "content-type": "application/json" }).end('{"code":"INTERNAL"}');
    else if (mode === "html") res.writeHead(200, { "content-type": "text/html" }).end("<html></html>");
    // "hang": never answer
  });
  await new Promise<void>((resolve) => impostor.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
  try {
    await rejectsWith("AUTH_UNAVAILABLE", new AuthClient(url).validate("t"));
    mode = "html";
    await rejectsWith("AUTH_UNAVAILABLE", new AuthClient(url).validate("t"));
    mode = "hang";
    await rejectsWith("AUTH_UNAVAILABLE", new AuthClient(url, { timeoutMs: 200 }).validate("t"));
  } finally {
    impostor.closeAllConnections();
    await new Promise<void>((resolve) => impostor.close(() => resolve()));
  }
});

test("a base URL that is not http(s) is refused up front", () => {
  assert.throws(
    () => new AuthClient("not a url"),
    (err) => isTabbifyError(err, "CONFIG_INVALID"),
  );
  assert.throws(
    () => new AuthClient("ftp://auth"),
    (err) => isTabbifyError(err, "CONFIG_INVALID"),
  );
});
