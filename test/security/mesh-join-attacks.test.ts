import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, test } from "node:test";
import { SignJWT } from "jose";
import { sleep } from "../../src/core/sleep.js";
import { REGISTRY_ULA } from "../../src/mesh/ula.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { mintToken } from "../support/mesh.js";
import { tempDir } from "../support/tools.js";

const nodeKey = "mesh-attack-node-key";
let node: RunningNode;
let dataDir: { path: string; remove(): Promise<void> };

before(async () => {
  dataDir = await tempDir("mesh-attacks");
  node = await startNode({ port: 0, dataDir: dataDir.path, nodeKey, httpLogLevel: "silent" });
});
after(async () => {
  await node.close();
  await dataDir.remove();
});

async function register(token: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${node.url}/v1/mesh/register`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      wg_public_key: crypto.randomBytes(32).toString("base64"),
      wg_listen_port: 51820,
      display_name: "attacker",
      ...extra,
    }),
  });
  return { status: res.status, body: (await res.json()) as { code?: string } };
}

test("a token signed with another key is refused (401) and changes nothing", async () => {
  const forged = await new SignJWT({ network: "acme", tags: ["node"], requested_ulas: [REGISTRY_ULA] })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer("tabbify-mesh")
    .setAudience("tabbify-mesh-join")
    .setExpirationTime("1h")
    .sign(crypto.randomBytes(32));
  const r = await register(forged, { requested_ula: REGISTRY_ULA });
  assert.equal(r.status, 401);
  assert.equal(r.body.code, "MESH_TOKEN_INVALID");
  const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"network":"acme","tags":[],"requested_ulas":[]}').toString("base64url")}.`;
  assert.equal((await register(unsigned)).status, 401);
  assert.equal(node.mesh?.peers().length, 0);
});

test("an expired token is refused", async () => {
  const token = await mintToken(dataDir.path, ["--network", "acme", "--ttl-secs", "1"]);
  await sleep(2100);
  const r = await register(token);
  assert.equal(r.status, 401);
  assert.equal(r.body.code, "MESH_TOKEN_INVALID");
});

test("a peer cannot claim another tenant's network", async () => {
  const token = await mintToken(dataDir.path, ["--network", "acme"]);
  const r = await register(token, { network: "globex" });
  assert.equal(r.status, 403);
  assert.equal(r.body.code, "MESH_FORBIDDEN");
  assert.equal(
    node.mesh?.peers().some((p) => p.network === "globex"),
    false,
  );
});

test("the registry's fixed ULA needs a token that grants it", async () => {
  const plain = await mintToken(dataDir.path, ["--network", "system", "--tags", "registry"]);
  const refused = await register(plain, { requested_ula: REGISTRY_ULA });
  assert.equal(refused.status, 403);
  const granted = await mintToken(dataDir.path, ["--network", "system", "--grant-ula", REGISTRY_ULA]);
  const ok = await register(granted, { requested_ula: REGISTRY_ULA });
  assert.equal(ok.status, 200);
  // A second claimant, even with a grant, gets 409 while the registry is live.
  const again = await register(granted, { requested_ula: REGISTRY_ULA });
  assert.equal(again.status, 409);
  assert.equal(again.body.code, "MESH_ULA_TAKEN");
});

test("a join token not tagged supervisor cannot put an address on the roster", async () => {
  const token = await mintToken(dataDir.path, ["--network", "acme", "--tags", "node"]);
  const res = await fetch(`${node.url}/v1/mesh/register`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      kind: "supervisor",
      name: "evil",
      address: "http://203.0.113.9:8730",
      ula: "::1",
      version: "1",
      tags: [],
    }),
  });
  assert.equal(res.status, 403);
  assert.equal(node.coordinator.supervisors().length, 0);
  const none = await fetch(`${node.url}/v1/mesh/peers`);
  assert.equal(none.status, 401);
});

test("a token holder sees its own network and the platform's peers, never another tenant's", async () => {
  const acme = await mintToken(dataDir.path, ["--network", "acme"]);
  const globex = await mintToken(dataDir.path, ["--network", "globex"]);
  const stream = await fetch(`${node.url}/v1/mesh/peers/stream`, {
    headers: { authorization: `Bearer ${acme}` },
  });
  assert.equal(stream.status, 200);
  const theirs = await register(globex, { display_name: "globex-secret-host" });
  assert.equal(theirs.status, 200);
  const ours = await register(acme, { display_name: "acme-host" });
  assert.equal(ours.status, 200);
  const shown = (ours.body as unknown as { peers: { display_name: string; network: string }[] }).peers;
  assert.ok(shown.some((p) => p.display_name === "acme-host"));
  for (const path of ["/v1/mesh/peers", "/v1/mesh/topology"]) {
    const text = await (
      await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${acme}` } })
    ).text();
    assert.ok(text.includes("acme-host"), `${path} shows acme's own peer`);
    assert.ok(!text.includes("globex-secret-host"), `${path} hides globex's peer from acme`);
  }
  assert.ok(!JSON.stringify(shown).includes("globex-secret-host"), "the register reply hides globex");
  // The stream: everything acme heard until its own join contains no globex peer.
  const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
  let heard = "";
  while (!heard.includes("acme-host")) heard += Buffer.from((await reader.read()).value ?? []).toString();
  await reader.cancel();
  assert.ok(!heard.includes("globex-secret-host"), "the peers stream hides globex's join");
  // The node key still sees both.
  const all = await (
    await fetch(`${node.url}/v1/mesh/peers`, { headers: { authorization: `Bearer ${nodeKey}` } })
  ).text();
  assert.ok(all.includes("globex-secret-host") && all.includes("acme-host"));
});
