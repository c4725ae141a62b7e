/**
 * Attacks on the edge's generated configs: roster entries and request paths are the only
 * outside input near them. A hostile runner name or address (a roster peer can send anything)
 * must never reach nginx, haproxy or Caddy syntax, and a hostile request path must not pick a
 * backend it does not name, reach the edge's generation probe, or smuggle headers to an app.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { APP_PORT, deriveAppLoopback } from "../../src/core/address.js";
import { checkedRoutes } from "../../src/dataplane/edge.js";
import { engineFor } from "../../src/dataplane/engines.js";
import { type RunningNode, startNode } from "../../src/node/index.js";
import { listenAsApp, registerLocalRunner } from "../support/local-apps.js";

const engines = ["nginx", "haproxy", "caddy"] as const;

const hostile = [
  { uuid: 'x"; } server evil 10.0.0.1:80; #', host: "127.0.0.5" },
  { uuid: "00000000-0000-4000-8000-000000000001\n  return 200 pwned;", host: "127.0.0.6" },
  { uuid: crypto.randomUUID(), host: "127.0.0.7; proxy_pass http://evil" },
  { uuid: crypto.randomUUID(), host: '127.0.0.8"},"evil":{"' },
  { uuid: crypto.randomUUID().toUpperCase(), host: "127.0.0.9" },
];

function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => (text += c));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
    setTimeout(() => socket.destroy(), 3000).unref();
    socket.on("close", () => resolve(text));
  });
}

describe("edge routes: only uuids and IP literals reach a config", () => {
  it("drops hostile roster entries before any renderer sees them", () => {
    const good = { uuid: crypto.randomUUID(), host: "127.0.0.10" };
    assert.deepEqual(checkedRoutes([...hostile, good]), [good]);
  });

  for (const name of engines) {
    it(`${name}: a config rendered from checked routes names nothing hostile`, () => {
      const routes = checkedRoutes([...hostile, { uuid: crypto.randomUUID(), host: "fd5a:1f02:1:2:3::1" }]);
      const text = engineFor(name).render({
        listenHost: "127.0.0.1",
        listenPort: 1,
        nodeApi: { host: "127.0.0.1", port: 2 },
        routes,
        appPort: APP_PORT,
        edgeDir: "/nonexistent",
        workers: 1,
        generation: 1,
      });
      for (const h of hostile) {
        assert.ok(!text.includes(h.uuid), `${name} config carries ${h.uuid}`);
      }
      assert.ok(!text.includes("evil") && !text.includes("pwned"));
    });
  }
});

for (const name of engines) {
  describe(`data plane ${name} under hostile input`, () => {
    const appUuid = crypto.randomUUID();
    let node: RunningNode;
    let app: http.Server;
    let dataDir: string;
    const seen: http.IncomingHttpHeaders[] = [];

    before(async () => {
      try {
        execFileSync(name, name === "nginx" ? ["-v"] : name === "haproxy" ? ["-v"] : ["version"], {
          stdio: "ignore",
        });
      } catch {
        throw new Error(`this test needs ${name} on PATH: apt-get install ${name}`);
      }
      dataDir = await mkdtemp(join(tmpdir(), `tbf-edge-attack-${name}-`));
      app = http.createServer((req, res) => {
        seen.push(req.headers);
        res.end(`app saw ${req.url}`);
      });
      await listenAsApp(app, appUuid);
      node = await startNode({
        host: "127.0.0.1",
        port: 0,
        dataDir,
        httpLogLevel: "silent",
        dataPlane: name,
      });
      for (const h of hostile) {
        registerLocalRunner(node.coordinator, h.uuid, h.host);
      }
      registerLocalRunner(node.coordinator, appUuid);
      await node.edge!.settle();
    });

    after(async () => {
      await node?.close();
      await new Promise((r) => app?.close(r));
      await rm(dataDir, { recursive: true, force: true });
    });

    it("the live config holds the real app, no hostile name and no roster-sent address; nothing was refused", async () => {
      const conf = await readFile(join(dataDir, "edge", engineFor(name).configFile), "utf8");
      assert.ok(conf.includes(appUuid));
      // Names that are no uuid are dropped; for a uuid the address is derived, never taken from the roster.
      for (const h of hostile) {
        if (!/^[0-9a-f-]{36}$/.test(h.uuid)) assert.ok(!conf.includes(h.uuid), h.uuid);
        assert.ok(!conf.includes(h.host) || h.host === deriveAppLoopback(h.uuid), h.host);
      }
      assert.ok(!conf.includes("evil") && !conf.includes("pwned"));
      assert.equal(node.edge!.status().last_refused, null);
    });

    it("path tricks reach the node's answers, not another backend", async () => {
      const port = Number(new URL(node.url).port);
      for (const path of [
        "/app/tabbify_node/x",
        "/app/..%2f..%2fv1%2ftopology",
        `/app/${appUuid}%00/x`,
        "/app/%61pp_x/",
        "/app/",
      ]) {
        const reply = await raw(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        const status = Number(reply.split(" ")[1]);
        assert.ok(status === 400 || status === 404, `${path} → ${reply.split("\r\n")[0]}`);
        assert.ok(!reply.includes("app saw"), `${path} reached the app`);
      }
    });

    it("a header smuggled into the path as %0d%0a stays in the path", async () => {
      const port = Number(new URL(node.url).port);
      const seenBefore = seen.length;
      const reply = await raw(
        port,
        `GET /app/${appUuid}/a%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assert.match(reply, /^HTTP\/1\.1 200/);
      assert.equal(seen.length, seenBefore + 1);
      assert.equal(seen.at(-1)!["x-injected"], undefined, "a CRLF in the path became a header");
    });
  });
}
