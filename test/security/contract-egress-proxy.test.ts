/**
 * Attacks on a handler's egress proxy (src/contract/egress-proxy.ts), over real sockets: CONNECT
 * to a host outside the contract, to an IP literal, to loopback and metadata addresses by name
 * and by literal, a Host header that names another host, credentials in the URL, origin-form
 * requests, and a denied request after an allowed one on the same keep-alive connection.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { type EgressProxy, startEgressProxy } from "../../src/contract/egress-proxy.js";

/** One raw exchange with the proxy: what it answers to `request` (status line and body). */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    socket.setEncoding("latin1");
    socket.on("data", (c: string) => {
      data += c;
      // A CONNECT that was let through stays open: its 200 line is all we wait for.
      if (/^HTTP\/1\.1 200 Connection Established\r\n\r\n/.test(data)) socket.destroy();
    });
    socket.on("close", () => resolve(data));
    socket.on("error", reject);
    socket.write(request);
  });
}

describe("the egress proxy refuses what the contract does not name", () => {
  let upstream: http.Server;
  let upstreamPort: number;
  let proxy: EgressProxy;
  const seen: { host?: string; url?: string }[] = [];
  const lines: string[] = [];

  before(async () => {
    upstream = http.createServer((req, res) => {
      seen.push({ host: req.headers.host, url: req.url });
      res.end(`upstream saw ${req.headers.host}`);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    upstreamPort = (upstream.address() as net.AddressInfo).port;
    proxy = await startEgressProxy({
      allow: [`127.0.0.1:${upstreamPort}`, "rebind.example", "api.example.com", "169.254.169.254"],
      log: (line) => lines.push(line),
      // The names resolve where an attacker would point them.
      lookup: async (name) =>
        name === "rebind.example"
          ? [{ address: "127.0.0.1", family: 4 }]
          : name === "api.example.com"
            ? [{ address: "169.254.169.254", family: 4 }]
            : [{ address: "93.184.215.14", family: 4 }],
    });
  });
  after(async () => {
    await proxy?.close();
    upstream?.close();
  });

  test("an allowed literal gets through, by CONNECT and by absolute-form", async () => {
    const tunnel = await raw(proxy.port, `CONNECT 127.0.0.1:${upstreamPort} HTTP/1.1\r\nhost: x\r\n\r\n`);
    assert.match(tunnel, /^HTTP\/1\.1 200 /);
    const res = await raw(
      proxy.port,
      `GET http://127.0.0.1:${upstreamPort}/p?q=1 HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n`,
    );
    assert.match(res, /^HTTP\/1\.1 200 /);
    // The Host header never decides: the upstream sees the URL's authority.
    assert.match(res, new RegExp(`upstream saw 127\\.0\\.0\\.1:${upstreamPort}`));
    assert.deepEqual(seen.at(-1), { host: `127.0.0.1:${upstreamPort}`, url: "/p?q=1" });
  });

  test("CONNECT to a host outside the contract, or another port of an allowed one, is 403 and logged", async () => {
    const before = proxy.refused;
    for (const target of ["evil.example:443", `127.0.0.1:${upstreamPort + 1}`, "api.example.com:8443"]) {
      const res = await raw(proxy.port, `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
      assert.match(res, /^HTTP\/1\.1 403 /, target);
      assert.match(res, /not in this handler's contract/);
    }
    assert.equal(proxy.refused, before + 3);
    assert.ok(
      lines.some((l) =>
        l.startsWith("tabbify egress: refused evil.example:443: not in this handler's contract"),
      ),
    );
  });

  test("IP literals the contract does not name, loopback by name, and metadata are refused", async () => {
    const cases: [string, RegExp][] = [
      ["93.184.215.14:443", /not in this handler's contract/],
      ["[::1]:443", /not in this handler's contract/],
      ["127.0.0.1:22", /not in this handler's contract/],
      // A contract name that resolves to loopback (DNS rebinding) or to the metadata service.
      ["rebind.example:443", /resolves only to internal addresses \(127\.0\.0\.1\)/],
      ["api.example.com:443", /resolves only to internal addresses \(169\.254\.169\.254\)/],
      // Link-local is never reachable, even named as a literal.
      ["169.254.169.254:80", /link-local/],
    ];
    for (const [target, why] of cases) {
      const res = await raw(proxy.port, `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
      assert.match(res, /^HTTP\/1\.1 403 /, target);
      assert.match(res, why, target);
    }
    const metadata = await raw(
      proxy.port,
      "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nhost: 169.254.169.254\r\nconnection: close\r\n\r\n",
    );
    assert.match(metadata, /^HTTP\/1\.1 403 /);
  });

  test("smuggles: Host headers, userinfo, origin-form, a denied request after an allowed one", async () => {
    // Origin-form with an allowed Host: a proxy takes absolute URLs only.
    const origin = await raw(
      proxy.port,
      `GET / HTTP/1.1\r\nhost: 127.0.0.1:${upstreamPort}\r\nconnection: close\r\n\r\n`,
    );
    assert.match(origin, /^HTTP\/1\.1 400 /);
    // The authority after `@` is the host: evil.example, refused.
    const userinfo = await raw(
      proxy.port,
      `GET http://127.0.0.1:${upstreamPort}@evil.example/ HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`,
    );
    assert.match(userinfo, /^HTTP\/1\.1 (400|403) /);
    // CONNECT decides by its target, never by a Host header naming an allowed one.
    const connect = await raw(
      proxy.port,
      `CONNECT evil.example:443 HTTP/1.1\r\nhost: 127.0.0.1:${upstreamPort}\r\n\r\n`,
    );
    assert.match(connect, /^HTTP\/1\.1 403 /);
    // Keep-alive: the second request on the connection is checked on its own.
    const hits = seen.length;
    const pair = await raw(
      proxy.port,
      `GET http://127.0.0.1:${upstreamPort}/one HTTP/1.1\r\nhost: x\r\n\r\nGET http://evil.example/two HTTP/1.1\r\nhost: 127.0.0.1:${upstreamPort}\r\nconnection: close\r\n\r\n`,
    );
    assert.match(pair, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 403 /);
    assert.equal(seen.length, hits + 1);
    assert.equal(seen.at(-1)?.url, "/one");
    // Other schemes in absolute-form are not forwarded.
    const ftp = await raw(
      proxy.port,
      "GET ftp://127.0.0.1/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert.match(ftp, /^HTTP\/1\.1 400 /);
  });
});

describe("the egress proxy's cost", () => {
  test("per request: direct, through the proxy (absolute-form, keep-alive), a new CONNECT tunnel each", async (t) => {
    const upstream = http.createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as net.AddressInfo).port;
    const proxy = await startEgressProxy({ allow: [`127.0.0.1:${port}`], log: () => {} });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (opts: http.RequestOptions) =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ agent, ...opts }, (res) => {
          assert.equal(res.statusCode, 200);
          res.resume();
          res.on("end", resolve);
        });
        req.on("error", reject);
        req.end();
      });
    const tunnelled = () =>
      new Promise<void>((resolve, reject) => {
        const socket = net.connect(proxy.port, "127.0.0.1");
        socket.on("error", reject);
        socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nhost: x\r\n\r\n`);
        let seen = "";
        socket.setEncoding("latin1");
        socket.on("data", (c: string) => {
          seen += c;
          if (seen.startsWith("HTTP/1.1 200 Connection Established\r\n\r\n") && !seen.includes("GET")) {
            seen += "GET";
            socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
          }
        });
        socket.on("close", () => (seen.includes("\r\n\r\nok") ? resolve() : reject(new Error(seen))));
      });
    const median = async (n: number, one: () => Promise<void>) => {
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const started = performance.now();
        await one();
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(n / 2)]!;
    };
    try {
      const direct = await median(300, () => get({ host: "127.0.0.1", port, path: "/" }));
      const proxied = await median(300, () =>
        get({ host: "127.0.0.1", port: proxy.port, path: `http://127.0.0.1:${port}/` }),
      );
      const tunnel = await median(300, tunnelled);
      t.diagnostic(
        `median per request: direct ${direct.toFixed(3)} ms, via proxy ${proxied.toFixed(3)} ms (+${(proxied - direct).toFixed(3)}), new CONNECT tunnel ${tunnel.toFixed(3)} ms`,
      );
    } finally {
      agent.destroy();
      await proxy.close();
      upstream.close();
    }
  });
});
