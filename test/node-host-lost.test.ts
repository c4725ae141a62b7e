import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { sleep } from "../src/core/sleep.js";
import { type RunningNode, startNode } from "../src/node/index.js";
import { listenAsApp } from "./support/local-apps.js";

/**
 * The node's `/app/<uuid>` door when the host running an app stops answering: a request the app
 * has not begun to answer asks the host probe, and a lost host's apps answer 502 at once and are
 * listed down, while a slow app on a host that answers is waited for. The probe is the test's
 * (the mesh e2e drives the real one through a cut WireGuard link).
 */
const KEY = "host-lost-key";

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - started }));
    });
    req.on("error", reject);
  });
}

describe("a lost host's apps", () => {
  const appUuid = crypto.randomUUID();
  const appHost = deriveAppLoopback(appUuid);
  let hostAnswers = true;
  const probed: string[] = [];
  let app: http.Server;
  let node: RunningNode;
  const hanging = new Set<http.ServerResponse>();
  const appTunnels = new Set<net.Socket>();

  const register = () => {
    node.coordinator.register({
      kind: "supervisor",
      name: "host-b",
      address: "http://[fd5a:1f00:1:2::1]:8730",
      ula: "fd5a:1f00:1:2::1",
      version: "1",
      tags: ["supervisor", "process"],
    });
    node.coordinator.register({
      kind: "runner",
      name: appUuid,
      app_uuid: appUuid,
      parent: "host-b",
      address: `${appHost}:${APP_PORT}`,
      ula: appHost,
      version: "1",
      tags: [],
    });
  };

  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url === "/slow") setTimeout(() => res.end("slow but here"), 1800);
      else if (req.url === "/hang") hanging.add(res);
      else res.end("ok");
    });
    app.on("upgrade", (_req, socket: net.Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n");
      socket.pipe(socket);
      socket.on("error", () => {});
      appTunnels.add(socket);
    });
    await listenAsApp(app, appUuid);
    node = await startNode({
      host: "127.0.0.1",
      port: 0,
      nodeKey: KEY,
      httpLogLevel: "silent",
      hostProbe: {
        alive: async (address) => {
          probed.push(address);
          return hostAnswers;
        },
      },
    });
    register();
  });

  after(async () => {
    await node?.close();
    for (const res of hanging) res.destroy();
    for (const socket of appTunnels) socket.destroy();
    app?.closeAllConnections();
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
  });

  const topology = async () =>
    JSON.parse((await get(`${node.url}/v1/topology`, { authorization: `Bearer ${KEY}` })).body) as {
      supervisors: { display_name: string }[];
      down: { display_name: string; runners: { app_uuid: string }[] }[];
    };

  it("waits for a slow app on a host that answers, asking its supervisor's address", async () => {
    const slow = await get(`${node.url}/app/${appUuid}/slow`);
    assert.equal(slow.status, 200);
    assert.equal(slow.body, "slow but here");
    assert.ok(slow.ms >= 1700, `answered after ${slow.ms} ms`);
    assert.ok(probed.length >= 2, `asked the probe while waiting: ${probed.length}`);
    assert.ok(probed.every((a) => a === "http://[fd5a:1f00:1:2::1]:8730"));
  });

  it("answers 502 within the bound when the host is lost, lists it down with its app at once, and ends its tunnels", async () => {
    // A WebSocket-style tunnel to the app, open before the host goes.
    const tunnel = net.connect(Number(new URL(node.url).port), "127.0.0.1");
    tunnel.on("error", () => {});
    let got = "";
    tunnel.setEncoding("utf8").on("data", (d: string) => (got += d));
    tunnel.write(
      `GET /app/${appUuid}/ws HTTP/1.1\r\nhost: app\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n`,
    );
    const opened = Date.now() + 5_000;
    while (!got.includes("\r\n\r\n") && Date.now() < opened) await sleep(10);
    assert.match(got, /^HTTP\/1\.1 101/);
    const tunnelClosed = new Promise<void>((resolve) => tunnel.once("close", () => resolve()));

    hostAnswers = false;
    const [first, second] = await Promise.all([
      get(`${node.url}/app/${appUuid}/hang`),
      get(`${node.url}/app/${appUuid}/hang`),
    ]);
    for (const r of [first, second]) {
      assert.equal(r.status, 502, r.body);
      assert.match(r.body, /APP_UNREACHABLE/);
      assert.ok(r.ms < 2000, `502 after ${r.ms} ms`);
    }
    const topo = await topology();
    assert.ok(!topo.supervisors.some((s) => s.display_name === "host-b"));
    const down = topo.down.find((s) => s.display_name === "host-b");
    assert.deepEqual(
      down?.runners.map((r) => r.app_uuid),
      [appUuid],
    );
    // The tunnel's host is gone: its client is cut off rather than left waiting on TCP.
    const closed = await Promise.race([tunnelClosed.then(() => true), sleep(2_000).then(() => false)]);
    assert.ok(closed, "the tunnel to the lost host is still open 2 s later");
  });

  it("serves the app again, and lists the host up, once it is back", async () => {
    hostAnswers = true;
    // What the lost host's next heartbeats do: answered 404, they register again.
    register();
    const back = await get(`${node.url}/app/${appUuid}/`);
    assert.equal(back.status, 200, back.body);
    const topo = await topology();
    assert.ok(topo.supervisors.some((s) => s.display_name === "host-b"));
    assert.ok(!topo.down.some((s) => s.display_name === "host-b"));
  });
});
