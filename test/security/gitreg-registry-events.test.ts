// Attacks on POST /api/v1/registry/events (issue 14 §4): only the registry events token may add
// to the audit chain; the node key is not accepted in its place when a dedicated token is set; a
// batch with one forged or malformed event changes nothing; non-audited actions are dropped.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { type RunningNode, startNode } from "../../src/node/server.js";
import { eventsMediaType } from "../../src/registry/notifications.js";

const EVENTS_TOKEN = "registry-events-token-attacks-0123456789";
const NODE_KEY = "node-key-attacks-0123456789abcdef";

let node: RunningNode;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "gitreg-events-"));
  node = await startNode({
    port: 0,
    dataDir: dir,
    nodeKey: NODE_KEY,
    registryEventsToken: EVENTS_TOKEN,
    httpLogLevel: "silent",
  });
});
after(async () => {
  await node?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const push = (id: string, digest = `sha256:${"b".repeat(64)}`, repository = "acme/web") => ({
  id,
  action: "push",
  target: { digest, repository, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 1 },
  actor: { name: "mallory" },
});

async function send(body: unknown, authorization?: string, type = eventsMediaType) {
  const r = await fetch(`${node.url}/api/v1/registry/events`, {
    method: "POST",
    headers: { "content-type": type, ...(authorization ? { authorization } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return {
    status: r.status,
    body: (await r.json()) as { code?: string; recorded?: number; ignored?: number },
  };
}

async function auditCount(): Promise<number> {
  const r = await fetch(`${node.url}/api/v1/audit?limit=500`, {
    headers: { authorization: `Bearer ${NODE_KEY}` },
  });
  return ((await r.json()) as { events: { action: string }[] }).events.filter((e) =>
    e.action.startsWith("registry."),
  ).length;
}

it("refuses a missing token, a wrong one, and the node key in place of the events token", async () => {
  for (const auth of [
    undefined,
    "Bearer wrong",
    `Bearer ${NODE_KEY}`,
    `Basic ${Buffer.from(`x:${EVENTS_TOKEN}`).toString("base64")}`,
  ]) {
    const r = await send({ events: [push(`evt-${auth}`)] }, auth);
    assert.equal(r.status, 401, `authorization ${auth}`);
  }
  assert.equal(await auditCount(), 0);
});

it("a batch with one malformed event records none of it", async () => {
  const good = push("evt-good-1");
  for (const bad of [
    push("evt-bad-digest", "sha256:xyz"),
    push("evt-bad-repo", `sha256:${"c".repeat(64)}`, "../../etc"),
    { action: "push", target: { digest: `sha256:${"c".repeat(64)}`, repository: "acme/web" } },
    "not an object",
  ]) {
    const r = await send({ events: [good, bad] }, `Bearer ${EVENTS_TOKEN}`);
    assert.equal(r.status, 400, JSON.stringify(bad));
  }
  assert.equal((await send("{not json", `Bearer ${EVENTS_TOKEN}`)).status, 400);
  assert.equal((await send({ nope: [] }, `Bearer ${EVENTS_TOKEN}`)).status, 400);
  assert.equal(await auditCount(), 0);
});

it("pulls and mounts are acknowledged but not audited; a valid push is", async () => {
  const pull = { ...push("evt-pull"), action: "pull" };
  const r = await send({ events: [pull, push("evt-push-ok")] }, `Bearer ${EVENTS_TOKEN}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.recorded, 1);
  assert.equal(r.body.ignored, 1);
  assert.equal(await auditCount(), 1);
});
