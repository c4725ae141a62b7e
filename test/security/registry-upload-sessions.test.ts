// Issue 9 §6 "Upload sessions": open upload sessions are capped per tenant (default 100,
// --max-uploads-per-tenant / REGISTRY_MAX_UPLOADS_PER_TENANT); past the cap a new one is 429
// TOOMANYREQUESTS with an OCI error body, other tenants are unaffected, finishing or cancelling a
// session frees its place, and the sessions of a killed registry still count after a restart.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  bearerFor,
  call,
  errorCode,
  type Headers,
  sha256,
  spawnRegistry,
  startTestAuth,
  startTestRegistry,
  type TestAuth,
  type TestRegistry,
} from "../registry-helpers.js";

function open(base: string, name: string, headers: Headers = {}) {
  return call(base, `/v2/${name}/blobs/uploads/`, { method: "POST", headers });
}

function assertTooMany(r: Awaited<ReturnType<typeof call>>, what: string) {
  assert.equal(r.status, 429, `${what}: ${r.status} ${r.body.toString()}`);
  assert.equal(errorCode(r), "TOOMANYREQUESTS", what);
  const body = r.json() as { errors: { message: string; detail: { limit: number } }[] };
  assert.match(body.errors[0]!.message, /open upload sessions/);
}

describe("behind auth, per tenant", () => {
  let auth: TestAuth;
  let reg: TestRegistry;
  let acme: Headers;
  let globex: Headers;

  before(async () => {
    auth = await startTestAuth();
    reg = await startTestRegistry({ authUrl: auth.url, maxUploadsPerTenant: 5 });
    acme = await bearerFor(reg.url, await auth.jwt("acme"), [
      "repository:acme/a:push",
      "repository:acme/b:push",
    ]);
    globex = await bearerFor(reg.url, await auth.jwt("globex"), ["repository:globex/a:push"]);
  });
  after(async () => {
    await reg?.close();
    await auth?.close();
  });

  it("the cap holds across a tenant's repositories, concurrent opens included; others are unaffected", async () => {
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) => open(reg.url, i % 2 ? "acme/a" : "acme/b", acme)),
    );
    const accepted = burst.filter((r) => r.status === 202);
    assert.equal(accepted.length, 5, "exactly the cap was opened");
    for (const r of burst.filter((x) => x.status !== 202)) assertTooMany(r, "over the cap");
    // A monolithic push opens a session too, so it is refused as well.
    const mono = await call(reg.url, `/v2/acme/a/blobs/uploads/?digest=${sha256("x")}`, {
      method: "POST",
      body: "x",
      headers: { ...acme, "content-type": "application/octet-stream" },
    });
    assertTooMany(mono, "monolithic push");
    assert.equal((await open(reg.url, "globex/a", globex)).status, 202, "globex has its own count");

    // Cancelling one frees one place; finishing one does too.
    const [first, second] = accepted;
    assert.equal(
      (await call(reg.url, first!.headers.get("location")!, { method: "DELETE", headers: acme })).status,
      204,
    );
    assert.equal((await open(reg.url, "acme/a", acme)).status, 202);
    assertTooMany(await open(reg.url, "acme/a", acme), "full again");
    const data = "finish me";
    const done = await call(reg.url, `${second!.headers.get("location")!}?digest=${sha256(data)}`, {
      method: "PUT",
      body: data,
      headers: { ...acme, "content-type": "application/octet-stream" },
    });
    assert.equal(done.status, 201);
    assert.equal((await open(reg.url, "acme/b", acme)).status, 202);
  });
});

describe("the default, the flag and the env twin", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tabbify-upload-cap-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("defaults to 100 open sessions per tenant", async () => {
    const reg = await startTestRegistry();
    try {
      for (let i = 0; i < 100; i++)
        assert.equal((await open(reg.url, "dev/app")).status, 202, `session ${i + 1}`);
      assertTooMany(await open(reg.url, "dev/app"), "the 101st");
      assert.equal((await open(reg.url, "other/app")).status, 202);
    } finally {
      await reg.close();
    }
  });

  it("REGISTRY_MAX_UPLOADS_PER_TENANT sets it, and a restart still counts the sessions it left", async () => {
    const dataDir = join(dir, "env");
    const first = await spawnRegistry(dataDir, [], { REGISTRY_MAX_UPLOADS_PER_TENANT: "2" });
    try {
      assert.equal((await open(first.url, "dev/app")).status, 202);
      assert.equal((await open(first.url, "dev/app")).status, 202);
      assertTooMany(await open(first.url, "dev/app"), "third under env 2");
    } finally {
      await first.stop("SIGKILL");
    }
    const second = await spawnRegistry(dataDir, ["--max-uploads-per-tenant", "3"], {
      REGISTRY_MAX_UPLOADS_PER_TENANT: "2",
    });
    try {
      assert.equal((await open(second.url, "dev/app")).status, 202, "the flag (3) wins over the env (2)");
      assertTooMany(await open(second.url, "dev/app"), "the two left by the killed registry count");
    } finally {
      await second.stop();
    }
  });

  it("a value that is not a positive integer is a usage error", async () => {
    await assert.rejects(
      spawnRegistry(join(dir, "bad"), ["--max-uploads-per-tenant", "0"]),
      /max-uploads-per-tenant/,
    );
  });
});
