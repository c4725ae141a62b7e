import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { silentLogger } from "../src/core/log.js";
import { sleep } from "../src/core/sleep.js";
import { MeshJoiner } from "../src/mesh/joiner.js";
import type { WireGuardInterface } from "../src/mesh/wireguard.js";
import { startNode } from "../src/node/index.js";
import { mintToken } from "./support/mesh.js";
import { tempDir } from "./support/tools.js";

const nodeKey = "mesh-http-test-node-key";
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function post(
  url: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const wgKey = () => crypto.randomBytes(32).toString("base64");

/** A node on a fresh data dir and a supervisor-tagged join token for network acme, both cleaned up. */
async function startNodeWithToken(prefix: string) {
  const dir = await tempDir(prefix);
  cleanups.push(dir.remove);
  const token = await mintToken(dir.path, ["--network", "acme", "--tags", "supervisor"]);
  const node = await startNode({ port: 0, dataDir: dir.path, nodeKey, httpLogLevel: "silent" });
  cleanups.push(() => node.close());
  return { dir, token, node };
}

/**
 * A started joiner whose WireGuard interface is a stand-in (the netns e2e drives wireguard-go),
 * heartbeating far beyond the test: only an announcement or a retry carries a change. Its app
 * addresses are whatever `hosted` holds when it reads them.
 */
async function startStandInJoiner(
  coordinatorUrl: string,
  token: string,
  dataDir: string,
  displayName: string,
  hosted: { ulas: string[] },
): Promise<MeshJoiner> {
  const wg = {
    up: async () => {},
    setPeers: async () => {},
    latestHandshakes: async () => new Map<string, number>(),
    isUp: async () => true,
    down: async () => {},
  } as unknown as WireGuardInterface;
  const joiner = new MeshJoiner({
    coordinatorUrl,
    token,
    dataDir,
    displayName,
    tags: ["supervisor"],
    listenPort: 51820,
    wg,
    hostedAppUlas: () => hosted.ulas,
    logger: silentLogger,
    heartbeatMs: 600_000,
  });
  await joiner.start();
  cleanups.push(() => joiner.stop());
  return joiner;
}

test("a joiner with a minted token registers, streams, heartbeats, and keeps its address across a node restart", async () => {
  const dir = await tempDir("mesh-http");
  cleanups.push(dir.remove);
  // The token is minted from the store before the node ever ran: the signing key is created there.
  const token = await mintToken(dir.path, ["--network", "acme", "--tags", "supervisor"]);
  let node = await startNode({ port: 0, dataDir: dir.path, nodeKey, httpLogLevel: "silent" });
  const ac = new AbortController();
  const closed = false;
  cleanups.push(async () => {
    ac.abort();
    if (!closed) await node.close();
  });

  // Follow the peers stream first.
  const stream = await fetch(`${node.url}/v1/mesh/peers/stream`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  assert.equal(stream.status, 200);
  assert.match(stream.headers.get("content-type") ?? "", /text\/event-stream/);
  const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
  let streamed = "";
  const readUntil = async (needle: string) => {
    const deadline = Date.now() + 10_000;
    while (!streamed.includes(needle) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      streamed += Buffer.from(value).toString("utf8");
    }
    assert.ok(streamed.includes(needle), `stream never carried ${needle}: ${streamed}`);
  };
  await readUntil("event: snapshot");

  const key = wgKey();
  const reg = await post(`${node.url}/v1/mesh/register`, token, {
    wg_public_key: key,
    wg_listen_port: 51820,
    display_name: "host-b",
  });
  assert.equal(reg.status, 200, JSON.stringify(reg.json));
  assert.equal(reg.json.ula, "fd5a:1f00:fe5e:1::1");
  assert.equal(reg.json.observed_endpoint, "127.0.0.1:51820");
  await readUntil("event: join");

  const appUla = "fd5a:1f02:44a5:240b:121a::1";
  const beat = await post(`${node.url}/v1/mesh/heartbeat`, token, {
    peer_id: reg.json.peer_id,
    wg_public_key: key,
    hosted_app_ulas: [appUla],
    peer_paths: [],
  });
  assert.equal(beat.status, 200, JSON.stringify(beat.json));
  await readUntil(appUla);

  const peers = (await (
    await fetch(`${node.url}/v1/mesh/peers`, { headers: { authorization: `Bearer ${token}` } })
  ).json()) as { peers: { ula: string; network: string; tags: string[]; hosted_app_ulas: string[] }[] };
  assert.deepEqual(
    peers.peers.map((p) => [p.ula, p.network, p.tags, p.hosted_app_ulas]),
    [["fd5a:1f00:fe5e:1::1", "acme", ["supervisor"], [appUla]]],
  );
  const topo = (await (
    await fetch(`${node.url}/v1/mesh/topology`, { headers: { authorization: `Bearer ${nodeKey}` } })
  ).json()) as { machines: { display_name: string }[]; edges: unknown[] };
  assert.deepEqual(
    topo.machines.map((m) => m.display_name),
    ["host-b"],
  );
  assert.deepEqual(topo.edges, []);

  const gone = await post(`${node.url}/v1/mesh/deregister`, token, { peer_id: reg.json.peer_id });
  assert.equal(gone.status, 200);
  await readUntil("event: leave");
  ac.abort();
  await node.close();

  // After a restart the heartbeat is a 404 (register again) and the address is the same.
  node = await startNode({ port: 0, dataDir: dir.path, nodeKey, httpLogLevel: "silent" });
  const lost = await post(`${node.url}/v1/mesh/heartbeat`, token, {
    peer_id: reg.json.peer_id,
    wg_public_key: key,
  });
  assert.equal(lost.status, 404);
  const again = await post(`${node.url}/v1/mesh/register`, token, {
    wg_public_key: key,
    wg_listen_port: 51820,
    display_name: "host-b",
  });
  assert.deepEqual([again.json.peer_id, again.json.ula], [reg.json.peer_id, reg.json.ula]);
});

test("a joiner announces an app address as soon as it comes or goes, not at its next heartbeat", async () => {
  const { dir, token, node } = await startNodeWithToken("mesh-announce");
  const hosted = { ulas: [] as string[] };
  const joiner = await startStandInJoiner(node.url, token, dir.path, "host-c", hosted);
  const appUla = "fd5a:1f02:44a5:240b:121a::1";
  const hostOf = async (want: boolean) => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if ((node.mesh?.hostOf(appUla) !== undefined) === want) return true;
      await sleep(20);
    }
    return false;
  };
  assert.equal(node.mesh?.hostOf(appUla), undefined);
  hosted.ulas = [appUla];
  const announced = Date.now();
  joiner.hostedChanged();
  // A second change while the first announcement is in flight is sent right after it.
  joiner.hostedChanged();
  assert.ok(await hostOf(true), "the coordinator learned the new address");
  assert.ok(Date.now() - announced < 10_000);
  hosted.ulas = [];
  joiner.hostedChanged();
  assert.ok(await hostOf(false), "the coordinator learned the address is gone");
});

test("a joiner whose heartbeat fails tries again within seconds, not at its next interval", async () => {
  const { dir, token, node } = await startNodeWithToken("mesh-retry");
  // Between the joiner and the node: while `cut`, every connection is dropped unanswered.
  let cut = false;
  let refused = 0;
  const gate = http.createServer((req, res) => {
    if (cut) {
      refused++;
      req.socket.destroy();
      return;
    }
    const upstream = http.request(
      `${node.url}${req.url}`,
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => gate.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => gate.close(() => resolve())));
  gate.unref();
  const hosted = { ulas: [] as string[] };
  const gateUrl = `http://127.0.0.1:${(gate.address() as AddressInfo).port}`;
  const joiner = await startStandInJoiner(gateUrl, token, dir.path, "host-d", hosted);
  const appUla = "fd5a:1f02:44a5:240b:121a::2";
  cut = true;
  hosted.ulas = [appUla];
  joiner.hostedChanged();
  const deadline = Date.now() + 10_000;
  while (refused < 2 && Date.now() < deadline) await sleep(20);
  assert.ok(refused >= 2, `the failed beat was tried again while cut (${refused} tries)`);
  assert.equal(node.mesh?.hostOf(appUla), undefined);
  cut = false;
  const restored = Date.now();
  while (node.mesh?.hostOf(appUla) === undefined && Date.now() - restored < 10_000) await sleep(20);
  assert.ok(node.mesh?.hostOf(appUla), "a retry reached the node once the link was back");
  assert.ok(Date.now() - restored < 10_000);
});
