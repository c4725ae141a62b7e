import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { createLogger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { RosterClient } from "./client.js";
import type { PeerRecord } from "./roster.js";

interface Call {
  path: string;
  auth: string | undefined;
  body: Record<string, unknown>;
}

/** A fake coordinator speaking the roster wire format; `answer` decides each reply's status. */
async function fakeNode(answer: (call: Call, calls: Call[]) => number) {
  const calls: Call[] = [];
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => (text += c));
    req.on("end", () => {
      const call = { path: req.url ?? "", auth: req.headers.authorization, body: JSON.parse(text || "{}") };
      calls.push(call);
      const status = answer(call, calls);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(
        status === 200 ? JSON.stringify({ peer_id: "peer-1", heartbeat_interval_secs: 5 }) : '{"error":"no"}',
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls, server, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(10);
  }
}

const record: PeerRecord = {
  kind: "supervisor",
  name: "thinkpad",
  address: "http://127.0.0.1:8730",
  ula: "127.0.0.1",
  version: "0.1.0",
  tags: ["supervisor", "process"],
};

describe("RosterClient", () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  it("registers, heartbeats the full record with the bearer key, and deregisters on stop", async () => {
    const node = await fakeNode(() => 200);
    cleanups.push(node.close);
    let version = "0.1.0";
    const client = new RosterClient({ nodeUrl: `${node.url}/`, nodeKey: "secret", intervalMs: 20 });
    client.start(() => ({ ...record, version }));
    await until(() => node.calls.length >= 3);
    version = "0.2.0";
    await until(() => node.calls.some((c) => c.body.version === "0.2.0"));
    await client.stop();
    const paths = node.calls.map((c) => c.path);
    assert.equal(paths[0], "/v1/mesh/register");
    assert.ok(
      paths.slice(1, -1).every((p) => p === "/v1/mesh/heartbeat"),
      paths.join(" "),
    );
    assert.equal(paths.at(-1), "/v1/mesh/deregister");
    assert.deepEqual(node.calls.at(-1)?.body, { peer_id: "peer-1" });
    assert.ok(node.calls.every((c) => c.auth === "Bearer secret"));
    assert.deepEqual(node.calls[1]?.body.tags, record.tags);
    assert.equal(client.peerId, "peer-1");
    const count = node.calls.length;
    await sleep(80);
    assert.equal(node.calls.length, count, "no beats after stop");
  });

  it("registers again when a heartbeat answers 404", async () => {
    let forgotten = false;
    const node = await fakeNode((call) => {
      if (call.path === "/v1/mesh/heartbeat" && !forgotten) {
        forgotten = true;
        return 404;
      }
      return 200;
    });
    cleanups.push(node.close);
    const client = new RosterClient({ nodeUrl: node.url, intervalMs: 20 });
    client.start(() => record);
    await until(() => node.calls.filter((c) => c.path === "/v1/mesh/register").length >= 2);
    await client.stop();
    const paths = node.calls.map((c) => c.path);
    assert.deepEqual(paths.slice(0, 3), ["/v1/mesh/register", "/v1/mesh/heartbeat", "/v1/mesh/register"]);
  });

  it("logs an unreachable node once per outage and recovers when it comes back", async () => {
    const lines: string[] = [];
    const logger = createLogger("test", "info", (l) => lines.push(l));
    // Reserve a port, then close it so the first beats are refused.
    const probe = await fakeNode(() => 200);
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const client = new RosterClient({ nodeUrl: `http://127.0.0.1:${port}`, intervalMs: 20, logger });
    client.start(() => record);
    await sleep(200);
    const outageLines = lines.filter((l) => l.includes("unreachable"));
    assert.equal(outageLines.length, 1, lines.join(""));
    assert.match(outageLines[0] ?? "", /ECONNREFUSED/);

    const calls: string[] = [];
    const revived = http.createServer((req, res) => {
      calls.push(req.url ?? "");
      req.resume();
      res.end(JSON.stringify({ peer_id: "peer-2", heartbeat_interval_secs: 5 }));
    });
    await new Promise<void>((r) => revived.listen(port, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => revived.close(() => r())));
    await until(() => calls.length >= 2);
    await client.stop();
    assert.equal(calls[0], "/v1/mesh/register");
    assert.ok(lines.some((l) => l.includes("reachable again")));
  });

  it("reports a rejected key once, without the key", async () => {
    const lines: string[] = [];
    const node = await fakeNode(() => 401);
    cleanups.push(node.close);
    const client = new RosterClient({
      nodeUrl: node.url,
      nodeKey: "hunter2",
      intervalMs: 20,
      logger: createLogger("test", "info", (l) => lines.push(l)),
    });
    client.start(() => record);
    await until(() => node.calls.length >= 3);
    await client.stop();
    assert.equal(lines.filter((l) => l.includes("rejected the node key")).length, 1);
    assert.ok(!lines.join("").includes("hunter2"));
    assert.ok(
      node.calls.every((c) => c.path === "/v1/mesh/register"),
      "never registered, so no deregister",
    );
  });
});
