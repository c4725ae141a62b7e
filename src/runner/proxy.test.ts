import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../core/log.js";
import { freeLoopbackPort } from "../core/net.js";
import { sleep } from "../core/sleep.js";
import { AppProxy } from "./proxy.js";

/** An upstream that reports the headers it got, streams slowly on /stream, and echoes upgrades. */
let upstream: http.Server;
let upstreamPort: number;
let releaseStream: () => void = () => {};
const proxy = new AppProxy(silentLogger);
let proxyPort: number;

before(async () => {
  upstream = http.createServer((req, res) => {
    if (req.url === "/stream") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first\n");
      releaseStream = () => res.end("second\n");
      return;
    }
    if (req.url === "/over-budget") {
      res.writeHead(504, { "x-tabbify-limit": "fuel" });
      res.end("over\n");
      return;
    }
    if (req.url === "/echo") {
      res.writeHead(200, {
        "x-upstream": "yes",
        connection: "keep-alive, x-secret-hop",
        "x-secret-hop": "1",
      });
      req.pipe(res);
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(req.headers));
  });
  upstream.on("upgrade", (_req, socket: net.Socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n");
    socket.pipe(socket);
  });
  upstreamPort = await freeLoopbackPort();
  await new Promise<void>((r) => upstream.listen(upstreamPort, "127.0.0.1", r));
  proxyPort = await freeLoopbackPort();
  await proxy.listen("127.0.0.1", proxyPort);
});
after(async () => {
  await proxy.close();
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
});

function request(
  path: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: proxyPort,
        path,
        method: opts.method ?? "GET",
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

/**
 * An upstream that answers the first request on each connection (after `delayMs`), then hangs up
 * on the next one without a word, as an app whose keep-alive timeout fires just as the proxy
 * reuses the socket.
 */
async function reuseDroppingUpstream(
  delayMs: number,
): Promise<{ server: net.Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((conn) => {
    connections += 1;
    let served = 0;
    conn.on("data", () => {
      served += 1;
      if (served > 1) conn.destroy();
      else
        setTimeout(
          () => conn.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok"),
          delayMs,
        );
    });
  });
  const port = await freeLoopbackPort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return { server, port, connections: () => connections };
}

describe("app proxy", { concurrency: false }, () => {
  test("503 with a reason while there is no healthy workload", async () => {
    proxy.unavailable("the workload is starting");
    const res = await request("/");
    assert.equal(res.status, 503);
    assert.match(res.body, /the workload is starting/);
  });

  test("hop-by-hop headers are dropped both ways; bodies pass through", async () => {
    proxy.switchTo({ host: "127.0.0.1", port: upstreamPort });
    const res = await request("/", {
      headers: {
        "x-app": "a",
        "keep-alive": "timeout=5",
        te: "trailers",
        connection: "x-drop",
        "x-drop": "1",
      },
    });
    const seen = JSON.parse(res.body) as Record<string, string>;
    assert.equal(seen["x-app"], "a");
    for (const h of ["keep-alive", "te", "x-drop"]) assert.equal(seen[h], undefined, h);
    const echo = await request("/echo", { method: "POST", body: "payload" });
    assert.equal(echo.body, "payload");
    assert.equal(echo.headers["x-upstream"], "yes");
    assert.equal(echo.headers["x-secret-hop"], undefined);
  });

  test("responses stream: the first chunk arrives before the upstream finishes", async () => {
    proxy.switchTo({ host: "127.0.0.1", port: upstreamPort });
    const first = await new Promise<{ chunk: string; rest: Promise<string> }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: proxyPort, path: "/stream", agent: false }, (res) => {
          res.setEncoding("utf8");
          let rest = "";
          const done = new Promise<string>((r) => res.on("end", () => r(rest)));
          res.once("data", (chunk: string) => {
            res.on("data", (d: string) => {
              rest += d;
            });
            resolve({ chunk, rest: done });
          });
        })
        .on("error", reject);
    });
    assert.equal(first.chunk, "first\n");
    releaseStream();
    assert.equal(await first.rest, "second\n");
  });

  test("WebSocket-style upgrades are piped both ways", async () => {
    proxy.switchTo({ host: "127.0.0.1", port: upstreamPort });
    const socket = net.connect(proxyPort, "127.0.0.1");
    socket.setEncoding("utf8");
    let got = "";
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.write("GET /ws HTTP/1.1\r\nhost: app\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n");
    while (!got.includes("\r\n\r\n")) await sleep(10);
    assert.match(got, /^HTTP\/1\.1 101/);
    got = "";
    socket.write("ping over the upgraded connection");
    while (!got.includes("connection")) await sleep(10);
    assert.equal(got, "ping over the upgraded connection");
    socket.destroy();
  });

  test("a pooled connection the app drops on reuse is retried once for a GET", async () => {
    const flaky = await reuseDroppingUpstream(0);
    try {
      proxy.switchTo({ host: "127.0.0.1", port: flaky.port });
      assert.equal((await request("/a")).body, "ok");
      const second = await request("/b");
      assert.equal(second.status, 200);
      assert.equal(second.body, "ok");
      assert.equal(flaky.connections(), 2);
    } finally {
      flaky.server.close();
    }
  });

  test("the retry dials afresh: other pooled connections the app dropped at once are not tried", async () => {
    // As a retiring app closing all its idle connections together (slow answers, so three
    // requests at once open three connections).
    const flaky = await reuseDroppingUpstream(100);
    try {
      proxy.switchTo({ host: "127.0.0.1", port: flaky.port });
      const first = await Promise.all(["/a", "/b", "/c"].map((path) => request(path)));
      assert.deepEqual(
        first.map((r) => r.status),
        [200, 200, 200],
      );
      assert.equal(flaky.connections(), 3);
      const next = await request("/d");
      assert.equal(next.status, 200, next.body);
      assert.equal(flaky.connections(), 4, "the retry opened a connection of its own");
    } finally {
      flaky.server.close();
    }
  });

  test("502 when the workload does not answer", async () => {
    proxy.switchTo({ host: "127.0.0.1", port: await freeLoopbackPort() });
    const res = await request("/");
    assert.equal(res.status, 502);
    assert.match(res.body, /did not answer/);
  });

  test("repeated response headers pass through as separate lines", async () => {
    const server = http.createServer((_req, res) => {
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.end("ok");
    });
    const port = await freeLoopbackPort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    try {
      proxy.switchTo({ host: "127.0.0.1", port });
      const res = await request("/");
      assert.deepEqual(res.headers["set-cookie"], ["a=1", "b=2"]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe("scale to zero and limits", () => {
  test("a sleeping app's request waits for the wake and gets the app's answer, never a 502", async () => {
    const target = { host: "127.0.0.1", port: upstreamPort };
    let wakes = 0;
    proxy.sleep(async () => {
      wakes += 1;
      await sleep(200);
      proxy.switchTo(target);
    });
    const [a, b] = await Promise.all([request("/"), request("/")]);
    assert.deepEqual([a.status, b.status], [200, 200]);
    assert.ok(wakes >= 1 && wakes <= 2, `woken ${wakes} times`);
    proxy.sleep(async () => {
      throw new Error("no workload");
    });
    const failed = await request("/");
    assert.equal(failed.status, 503);
    assert.match(failed.body, /waking the app failed: no workload/);
    proxy.switchTo(target);
  });

  test("a workload's x-tabbify-limit answer is reported", async () => {
    const seen: string[] = [];
    proxy.onLimit = (reason) => seen.push(reason);
    const res = await request("/over-budget");
    assert.equal(res.status, 504);
    assert.deepEqual(seen, ["fuel"]);
    proxy.onLimit = undefined;
  });
});
