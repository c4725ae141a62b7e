// Issue 14 §4: the registry's push and delete events, in Distribution's notification envelope,
// reach the node's audit chain through an outage of the node AND a restart of the registry: the
// events wait in the registry's on-disk queue, then arrive once, in order, with the registry
// token's subject as the actor. The outage here lasts seconds, not ten minutes: the queue is on
// disk and retried with capped backoff, so its length changes nothing but the wait.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { type RunningNode, startNode } from "../src/node/server.js";
import { type RunningRegistry, startRegistry } from "../src/registry/index.js";
import { eventsMediaType } from "../src/registry/notifications.js";
import { bearerFor, call, pushImage, startTestAuth, type TestAuth } from "./registry-helpers.js";
import { freePort } from "./support/tools.js";

const EVENTS_TOKEN = "registry-events-token-0123456789abcdef";
const NODE_KEY = "node-key-for-notifications-0123456789";

let auth: TestAuth;
let dir: string;
let registry: RunningRegistry | undefined;
let node: RunningNode | undefined;
let nodePort: number;

before(async () => {
  auth = await startTestAuth();
  dir = await mkdtemp(join(tmpdir(), "gitreg-notify-"));
  nodePort = await freePort();
});
after(async () => {
  await registry?.close();
  await node?.close();
  await auth?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const openRegistry = () =>
  startRegistry({
    dataDir: join(dir, "registry"),
    authUrl: auth.url,
    notify: [{ url: `http://127.0.0.1:${nodePort}/api/v1/registry/events`, token: EVENTS_TOKEN }],
    notifyBackoffMs: { min: 100, max: 1000 },
  });

interface AuditRow {
  seq: number;
  actor: string;
  action: string;
  subject: string;
  after: Record<string, unknown>;
}

async function registryAudit(): Promise<AuditRow[]> {
  const r = await fetch(`${node!.url}/api/v1/audit?limit=500`, {
    headers: { authorization: `Bearer ${NODE_KEY}` },
  });
  assert.equal(r.status, 200);
  const { events } = (await r.json()) as { events: AuditRow[] };
  return events.filter((e) => e.action.startsWith("registry."));
}

it("events queued while the node is down survive a registry restart and arrive once, in order", async () => {
  registry = await openRegistry();
  const jwt = await auth.jwt("acme", { subject: "ci-bot" });
  const headers = await bearerFor(registry.url, jwt, ["repository:acme/web:pull,push,delete"]);
  const pushed: { tag: string; digest: string }[] = [];
  for (const tag of ["v1", "v2", "v3"]) {
    const image = await pushImage(registry.url, "acme/web", tag, {
      layer: Buffer.from(`web ${tag}`),
      headers,
    });
    pushed.push({ tag, digest: image.digest });
  }
  const del = await call(registry.url, "/v2/acme/web/manifests/v2", { method: "DELETE", headers });
  assert.equal(del.status, 202);
  // Nothing listens on the node's port yet: all four wait on disk.
  await sleep(500);
  assert.deepEqual(Object.values(await registry.notifier!.backlog()), [4]);
  await registry.close();
  const queueDirs = await readdir(join(dir, "registry", "notifications"));
  assert.equal(queueDirs.length, 1);
  assert.equal((await readdir(join(dir, "registry", "notifications", queueDirs[0]!))).length, 4);

  registry = await openRegistry();
  node = await startNode({
    port: nodePort,
    dataDir: join(dir, "node"),
    nodeKey: NODE_KEY,
    registryEventsToken: EVENTS_TOKEN,
    httpLogLevel: "silent",
  });
  const deadline = Date.now() + 30_000;
  let rows = await registryAudit();
  while (rows.length < 4 && Date.now() < deadline) {
    await sleep(200);
    rows = await registryAudit();
  }
  assert.deepEqual(
    rows.map((r) => [r.action, r.subject, r.actor, r.after.tag]),
    [
      ["registry.push", `image:acme/web@${pushed[0]!.digest}`, "ci-bot", "v1"],
      ["registry.push", `image:acme/web@${pushed[1]!.digest}`, "ci-bot", "v2"],
      ["registry.push", `image:acme/web@${pushed[2]!.digest}`, "ci-bot", "v3"],
      ["registry.delete", `image:acme/web@${pushed[1]!.digest}`, "ci-bot", "v2"],
    ],
  );
  assert.equal(rows[0]!.after.mediaType, "application/vnd.oci.image.manifest.v1+json");
  assert.equal(typeof rows[0]!.after.size, "number");
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i]!.seq > rows[i - 1]!.seq);
  await sleep(300);
  assert.deepEqual(Object.values(await registry.notifier!.backlog()), [0]);

  // A push while both are up arrives too, after the backlog (the restarted registry signs new tokens).
  const fresh = await bearerFor(registry.url, jwt, ["repository:acme/web:pull,push"]);
  const live = await pushImage(registry.url, "acme/web", "v4", {
    layer: Buffer.from("web v4"),
    headers: fresh,
  });
  const until = Date.now() + 15_000;
  while ((await registryAudit()).length < 5 && Date.now() < until) await sleep(100);
  const last = (await registryAudit()).at(-1)!;
  assert.equal(last.subject, `image:acme/web@${live.digest}`);
});

it("a redelivered envelope (the registry retrying after a lost answer) adds no audit row", async () => {
  const before = await registryAudit();
  const event = {
    id: "evt-redelivered-1",
    timestamp: new Date().toISOString(),
    action: "push",
    target: {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${"a".repeat(64)}`,
      size: 10,
      repository: "acme/web",
      tag: "again",
    },
    actor: { name: "ci-bot" },
  };
  const send = () =>
    fetch(`${node!.url}/api/v1/registry/events`, {
      method: "POST",
      headers: { "content-type": eventsMediaType, authorization: `Bearer ${EVENTS_TOKEN}` },
      body: JSON.stringify({ events: [event] }),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, number> }));
  assert.deepEqual((await send()).body, { recorded: 1, duplicates: 0, ignored: 0 });
  assert.deepEqual((await send()).body, { recorded: 0, duplicates: 1, ignored: 0 });
  assert.equal((await registryAudit()).length, before.length + 1);
});
