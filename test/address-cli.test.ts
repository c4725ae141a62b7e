import assert from "node:assert/strict";
import { test } from "node:test";
import { appUuidFromRepo, deriveAppLoopback } from "../src/core/address.js";
import { spawnTabbify } from "./support/tools.js";

async function address(args: string[]): Promise<{ code: number | string; out: string }> {
  const proc = spawnTabbify(["address", ...args]);
  const code = await proc.exited;
  return { code, out: proc.output() };
}

const golden = "0191e7c2-1111-7222-8333-444455556666";

test("tabbify address <uuid> prints the ULA, the loopback twin and the port", async () => {
  const { code, out } = await address([golden.toUpperCase()]);
  assert.equal(code, 0, out);
  assert.match(out, /^uuid +0191e7c2-1111-7222-8333-444455556666$/m);
  assert.match(out, /^ula +fd5a:1f02:44a5:240b:121a::1\b/m);
  assert.match(out, /^local +127\.68\.165\.37\b/m);
  assert.match(out, /^port +8730$/m);
});

test("tabbify address --json is machine-readable", async () => {
  const { code, out } = await address([golden, "--json"]);
  assert.equal(code, 0, out);
  assert.deepEqual(JSON.parse(out), {
    uuid: golden,
    ula: "fd5a:1f02:44a5:240b:121a::1",
    local: "127.68.165.37",
    port: 8730,
  });
});

test("tabbify address --repo prints the uuid a repository gets, and its addresses", async () => {
  const repo = "https://github.com/tabbify-io/hello-http";
  const { code, out } = await address(["--repo", repo, "--json"]);
  assert.equal(code, 0, out);
  const result = JSON.parse(out) as Record<string, unknown>;
  const uuid = appUuidFromRepo(repo);
  assert.equal(result.repo, repo);
  assert.equal(result.uuid, uuid);
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(result.local, deriveAppLoopback(uuid));
  const text = await address(["--repo", repo]);
  assert.match(text.out, new RegExp(`^uuid +${uuid}$`, "m"));
});

test("tabbify address refuses a bad uuid and bad usage with exit 1 and a clear message", async () => {
  const bad = await address(["not-a-uuid"]);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /"not-a-uuid" is not a UUID \(UUID_INVALID\)/);
  const none = await address([]);
  assert.equal(none.code, 1);
  assert.match(none.out, /exactly one of <uuid> or --repo/);
  const both = await address([golden, "--repo", "https://example.com/x"]);
  assert.equal(both.code, 1);
});

test("tabbify address --env prints an environment's uuid: prod is the app's, others UUID v5 under it", async () => {
  const test = await address([golden, "--env", "test", "--json"]);
  assert.equal(test.code, 0, test.out);
  const body = JSON.parse(test.out) as Record<string, unknown>;
  assert.equal(body.app_uuid, golden);
  assert.equal(body.env, "test");
  // uuid v5(name "test", namespace = the app uuid), computed independently of src/core.
  const { v5 } = await import("uuid");
  assert.equal(body.uuid, v5("test", golden));
  assert.notEqual(body.uuid, golden);
  const prod = JSON.parse((await address([golden, "--env", "prod", "--json"])).out) as Record<
    string,
    unknown
  >;
  assert.equal(prod.uuid, golden, "prod keeps the app's uuid and address");
  const bad = await address([golden, "--env", "Bad Name"]);
  assert.equal(bad.code, 1);
});
