import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, it, mock } from "node:test";
import { deriveAppUla } from "../src/core/address.js";
import { sleep } from "../src/core/sleep.js";
import { RosterClient } from "../src/mesh/client.js";
import type { PeerInfo, PeerRecord } from "../src/mesh/roster.js";
import { type RunningNode, startNode } from "../src/node/index.js";

/** The node's roster, topology and bearer auth, over HTTP, with a 1.5 s heartbeat timeout. */

const KEY = "topology-test-key-0123456789";
const auth = { authorization: `Bearer ${KEY}` };

async function call(
  node: RunningNode,
  path: string,
  opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { ...(opts.headers ?? auth) };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${node.url}${path}`, {
    method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
    headers,
    body:
      opts.body === undefined
        ? undefined
        : typeof opts.body === "string"
          ? opts.body
          : JSON.stringify(opts.body),
  });
  const text = await res.text();
  assert.ok(!text.includes(KEY), "the node key never appears in a response");
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown>, headers: res.headers };
}

/** Polls until `done` holds: a loaded 2-core CI machine may run timers late, so waits are event-driven. */
async function eventually(what: string, done: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

function supervisor(name: string): PeerRecord {
  return {
    kind: "supervisor",
    name,
    address: `http://127.0.0.1:${name.length + 9000}`,
    ula: "fd5a:1f00:0:1::1",
    version: "0.1.0",
    tags: ["supervisor", "process", "wasm"],
  };
}

function runner(uuid: string, parent: string): PeerRecord {
  return {
    kind: "runner",
    name: uuid,
    app_uuid: uuid,
    parent,
    address: "127.9.9.9:8730",
    ula: "127.9.9.9",
    version: "0.1.0",
    tags: ["runner"],
  };
}

describe("node roster and topology", () => {
  let node: RunningNode;
  let keyless: RunningNode;

  before(async () => {
    node = await startNode({ port: 0, nodeKey: KEY, peerTimeoutMs: 1500, httpLogLevel: "silent" });
    keyless = await startNode({ port: 0, httpLogLevel: "silent" });
  });
  after(async () => {
    await node?.close();
    await keyless?.close();
  });

  it("serves /health without auth", async () => {
    const res = await call(node, "/health", { headers: {} });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, "ok");
    assert.match(String(res.body.version), /^\d+\.\d+\.\d+/);
  });

  it("answers 401 with {error, code} for a missing, malformed or wrong bearer token", async () => {
    for (const headers of [
      {},
      { authorization: KEY },
      { authorization: `Basic ${Buffer.from(`x:${KEY}`).toString("base64")}` },
      { authorization: "Bearer wrong" },
      { authorization: `Bearer ${KEY}x` },
      { authorization: `Bearer ${KEY.slice(0, -1)}` },
    ] as Record<string, string>[]) {
      for (const path of ["/v1/topology", "/v1/mesh/peers", "/v1/supervisors", "/v1/apps"]) {
        const res = await call(node, path, { headers });
        assert.equal(res.status, 401, `${path} ${JSON.stringify(headers).slice(0, 20)}`);
        assert.equal(res.body.code, "UNAUTHORIZED");
        assert.equal(typeof res.body.error, "string");
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
      }
    }
    const write = await call(node, "/v1/mesh/register", { headers: {}, body: supervisor("sneaky") });
    assert.equal(write.status, 401);
    assert.equal((await call(node, "/v1/topology")).status, 200);
    assert.equal(
      (await call(node, "/v1/topology", { headers: { authorization: `bearer  ${KEY}` } })).status,
      200,
    );
  });

  it("answers 503 on authenticated routes when no node key is configured", async () => {
    for (const headers of [{}, auth] as Record<string, string>[]) {
      const res = await call(keyless, "/v1/topology", { headers });
      assert.equal(res.status, 503);
      assert.equal(res.body.code, "NODE_KEY_NOT_SET");
      assert.match(String(res.body.error), /TABBIFY_NODE_KEY/);
    }
    assert.equal((await call(keyless, "/health", { headers: {} })).status, 200);
  });

  it("compares the key in constant time, on equal-length digests", async () => {
    const spy = mock.method(crypto, "timingSafeEqual");
    try {
      await call(node, "/v1/topology", { headers: { authorization: "Bearer short" } });
      await call(node, "/v1/topology");
      assert.equal(spy.mock.callCount(), 2);
      for (const c of spy.mock.calls) {
        const [a, b] = c.arguments as unknown as [Buffer, Buffer];
        assert.equal(a.length, 32);
        assert.equal(b.length, 32);
      }
      assert.deepEqual(
        spy.mock.calls.map((c) => c.result),
        [false, true],
      );
    } finally {
      spy.mock.restore();
    }
  });

  it("rejects malformed peer records with 400 and a message", async () => {
    const bad = await call(node, "/v1/mesh/register", { body: { kind: "peer", name: "x" } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, "PEER_INVALID");
    const notJson = await call(node, "/v1/mesh/register", { body: "{nope" });
    assert.equal(notJson.status, 400);
    assert.equal(typeof notJson.body.error, "string");
    const noId = await call(node, "/v1/mesh/deregister", { body: {} });
    assert.equal(noId.status, 400);
    assert.equal(noId.body.code, "BAD_REQUEST");
  });

  it("registers, heartbeats, deregisters and expires peers", async () => {
    const reg = await call(node, "/v1/mesh/register", { body: supervisor("sup-expiring") });
    assert.equal(reg.status, 200);
    assert.match(String(reg.body.peer_id), /^[0-9a-f-]{36}$/);
    assert.equal(typeof reg.body.heartbeat_interval_secs, "number");
    const again = await call(node, "/v1/mesh/register", { body: supervisor("sup-expiring") });
    assert.equal(again.body.peer_id, reg.body.peer_id, "peer id is stable per (kind, name)");

    const beatAt = Date.now();
    const beat = await call(node, "/v1/mesh/heartbeat", {
      body: { ...supervisor("sup-expiring"), version: "0.2.0" },
    });
    assert.equal(beat.status, 200);
    let peers = (await call(node, "/v1/mesh/peers")).body.peers as PeerInfo[];
    assert.equal(peers.find((p) => p.name === "sup-expiring")?.version, "0.2.0");

    const unknown = await call(node, "/v1/mesh/heartbeat", { body: supervisor("never-registered") });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, "PEER_UNKNOWN");

    const gone = await call(node, "/v1/mesh/register", { body: supervisor("sup-leaving") });
    assert.equal(
      (await call(node, "/v1/mesh/deregister", { body: { peer_id: gone.body.peer_id } })).status,
      200,
    );
    peers = (await call(node, "/v1/mesh/peers")).body.peers as PeerInfo[];
    assert.ok(!peers.some((p) => p.name === "sup-leaving"));

    await eventually("the silent peer expires", async () => {
      const now = (await call(node, "/v1/mesh/peers")).body.peers as PeerInfo[];
      return !now.some((p) => p.name === "sup-expiring");
    });
    assert.ok(Date.now() - beatAt >= 1_450, "expired before its 1.5 s timeout");
    const late = await call(node, "/v1/mesh/heartbeat", { body: supervisor("sup-expiring") });
    assert.equal(late.status, 404, "an expired peer must register again");
  });

  it("builds the topology from RosterClients and lists runners as orphaned once their supervisor goes silent", async () => {
    const appA: string = crypto.randomUUID();
    const appB: string = crypto.randomUUID();
    const appC: string = crypto.randomUUID();
    const clients = [runner(appA, "laptop"), runner(appB, "laptop"), runner(appC, "ghost")].map((record) => {
      const c = new RosterClient({ nodeUrl: node.url, nodeKey: KEY, intervalMs: 200 });
      c.start(() => record);
      return c;
    });
    const supervisorClient = new RosterClient({ nodeUrl: node.url, nodeKey: KEY, intervalMs: 200 });
    supervisorClient.start(() => supervisor("laptop"));
    try {
      await eventually("every beat reached the roster", async () => {
        const t = (await call(node, "/v1/topology")).body as {
          supervisors: { display_name: string; runners: unknown[] }[];
          orphaned: { app_uuid: string }[];
        };
        const l = t.supervisors.find((s) => s.display_name === "laptop");
        return l?.runners.length === 2 && t.orphaned.some((o) => o.app_uuid === appC);
      });
      const topo = (await call(node, "/v1/topology")).body as {
        supervisors: {
          display_name: string;
          ula: string;
          tags: string[];
          version: string;
          last_seen: string;
          runners: { app_uuid: string; app_ula: string }[];
        }[];
        orphaned: { app_uuid: string; app_ula: string; parent: string | null }[];
      };
      const laptop = topo.supervisors.find((s) => s.display_name === "laptop");
      assert.ok(laptop, JSON.stringify(topo));
      assert.equal(laptop.ula, "fd5a:1f00:0:1::1");
      assert.deepEqual(laptop.tags, ["supervisor", "process", "wasm"]);
      assert.ok(!Number.isNaN(Date.parse(laptop.last_seen)));
      assert.deepEqual(
        laptop.runners.map((r) => [r.app_uuid, r.app_ula]).sort(),
        [
          [appA, deriveAppUla(appA)],
          [appB, deriveAppUla(appB)],
        ].sort(),
      );
      assert.deepEqual(
        topo.orphaned.filter((o) => o.app_uuid === appC).map((o) => o.parent),
        ["ghost"],
      );

      const sups = (await call(node, "/v1/supervisors")).body.supervisors as {
        display_name: string;
        runner_count: number;
      }[];
      assert.equal(sups.find((s) => s.display_name === "laptop")?.runner_count, 2);
      const apps = (await call(node, "/v1/apps")).body.apps as {
        uuid: string;
        supervisor: string;
        orphaned: boolean;
      }[];
      assert.deepEqual(
        apps
          .filter((a) => [appA, appC].includes(a.uuid))
          .map((a) => [a.uuid, a.supervisor, a.orphaned])
          .sort(),
        [
          [appA, "laptop", false],
          [appC, "ghost", true],
        ].sort(),
      );

      // The supervisor dies without deregistering: stop its beats but keep it on the roster.
      await stopWithoutDeregister(supervisorClient);
      await eventually("the silent supervisor leaves the topology", async () => {
        const t = (await call(node, "/v1/topology")).body as { supervisors: { display_name: string }[] };
        return !t.supervisors.some((s) => s.display_name === "laptop");
      });
      const after = (await call(node, "/v1/topology")).body as typeof topo;
      assert.ok(!after.supervisors.some((s) => s.display_name === "laptop"));
      assert.deepEqual(
        after.orphaned
          .filter((o) => [appA, appB, appC].includes(o.app_uuid))
          .map((o) => [o.app_uuid, o.parent])
          .sort(),
        [
          [appA, "laptop"],
          [appB, "laptop"],
          [appC, "ghost"],
        ].sort(),
      );
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
    }
    const left = (await call(node, "/v1/mesh/peers")).body.peers as PeerInfo[];
    assert.ok(!left.some((p) => [appA, appB, appC].includes(p.name)), "stop() deregistered the runners");
  });
});

/** Simulates a kill -9: the client stops beating and never says goodbye. */
async function stopWithoutDeregister(client: RosterClient): Promise<void> {
  const internals = client as unknown as { registered: boolean };
  const registeredBefore = internals.registered;
  internals.registered = false;
  await client.stop();
  assert.equal(registeredBefore, true);
}
