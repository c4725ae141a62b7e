import http from "node:http";
import type { Duplex } from "node:stream";
import { type EndToEnd, endToEnd } from "../core/http-hop.js";
import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import type { Upstream } from "../runtimes/runtime.js";

/**
 * The app's public face: an HTTP server on `<app address>:8730` that streams every request to
 * the current workload's private port. The target can be switched atomically; requests already
 * under way finish on the target they started on, which is what lets a swap drain the old one.
 */

export class ProxyTarget {
  /** Requests and upgraded connections currently using this target. */
  inflight = 0;
  private idleWaiters: (() => void)[] = [];
  constructor(readonly upstream: Upstream) {}

  acquire(): () => void {
    this.inflight += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inflight -= 1;
      if (this.inflight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    };
  }

  /** Resolves true once nothing uses this target, false if `timeoutMs` passes first. */
  drained(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

export class AppProxy {
  private target: ProxyTarget | undefined;
  private unavailableReason = "the app is starting";
  /** Set while an on_request app sleeps: the first request calls it and waits for a target. */
  private waker: (() => Promise<void>) | undefined;
  /** When the last request or upgrade arrived or ended (for the idle timeout). */
  lastActivity = Date.now();
  /** Told when the workload answers that a request hit a limit (the wasm host's `x-tabbify-limit: fuel`). */
  onLimit: ((reason: "fuel") => void) | undefined;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 64 });
  private readonly server: http.Server;

  constructor(private readonly logger: Logger) {
    this.server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.forward(req, res));
    this.server.on("upgrade", (req, socket, head) => this.forwardUpgrade(req, socket, head));
    this.server.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
      else socket.destroy();
    });
  }

  /** Set once the app address passed to a successor runner: answers close their connection. */
  private retiring = false;

  /**
   * Binds host:port, or listens on `handle`: the app address's socket a predecessor runner
   * handed over (runner/succession.ts), which both accept on until the predecessor retires.
   */
  listen(host: string, port: number, handle?: object): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(handle ? { handle } : { host, port, exclusive: true }, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
  }

  /** Switches where new requests go; returns the previous target so the caller can drain it. */
  switchTo(upstream: Upstream): ProxyTarget | undefined {
    const previous = this.target;
    this.target = new ProxyTarget(upstream);
    this.waker = undefined;
    return previous;
  }

  /** New requests get 503 with `reason` until the next switchTo. */
  unavailable(reason: string): ProxyTarget | undefined {
    const previous = this.target;
    this.target = undefined;
    this.unavailableReason = reason;
    this.waker = undefined;
    return previous;
  }

  /**
   * The app sleeps (scaled to zero): a request that arrives is held while `wake` starts a
   * workload, then forwarded to it. Only if the wake fails does it get a 503 saying why.
   */
  sleep(wake: () => Promise<void>): ProxyTarget | undefined {
    const previous = this.unavailable("the app is idle");
    this.waker = wake;
    return previous;
  }

  /** True while no request is under way on the current target. */
  get quiet(): boolean {
    return (this.target?.inflight ?? 0) === 0;
  }

  get current(): ProxyTarget | undefined {
    return this.target;
  }

  close(): Promise<void> {
    this.agent.destroy();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Wakes a sleeping app, then calls `go`; false when there is nothing to wake or the wake failed. */
  private woken(go: () => void, fail: (why: string) => void): boolean {
    const wake = this.waker;
    if (this.target || !wake) return false;
    wake().then(
      () => (this.target ? go() : fail(this.unavailableReason)),
      (err: unknown) => fail(`waking the app failed: ${(err as Error).message}`),
    );
    return true;
  }

  /** The listening server, whose socket a successor runner takes over. */
  get listener(): http.Server {
    return this.server;
  }

  /**
   * For a runner whose successor serves the app address now: accepts no more connections, lets
   * the requests that come on open ones finish (each answer closes its connection), and ends
   * once none is left or `graceMs` passed.
   */
  async retire(graceMs: number): Promise<void> {
    this.retiring = true;
    // Stops accepting (the successor's copy of the socket keeps accepting) and closes idle connections.
    this.server.close();
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      const open = await new Promise<number>((done) => this.server.getConnections((_e, n) => done(n ?? 0)));
      if (open === 0) break;
      this.server.closeIdleConnections();
      await sleep(50);
    }
    this.server.closeAllConnections();
    this.agent.destroy();
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.retiring) res.shouldKeepAlive = false;
    this.lastActivity = Date.now();
    res.on("close", () => {
      this.lastActivity = Date.now();
    });
    const refuse = (why: string) => {
      if (res.headersSent) return;
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify({ error: `app unavailable: ${why}` }));
    };
    if (this.woken(() => this.forward(req, res), refuse)) return;
    const target = this.target;
    if (!target) {
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify({ error: `app unavailable: ${this.unavailableReason}` }));
      return;
    }
    const release = target.acquire();
    res.on("close", release);
    this.send(req, res, target, endToEnd(req.rawHeaders), true);
  }

  private send(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    target: ProxyTarget,
    request: EndToEnd,
    mayRetry: boolean,
  ): void {
    const upstreamReq = http.request({
      host: target.upstream.host,
      port: target.upstream.port,
      method: req.method,
      path: req.url,
      headers: request.headers,
      // The retry dials afresh: the pool may hold more sockets the app closed at the same moment.
      agent: mayRetry ? this.agent : false,
    });
    upstreamReq.on("response", (upstreamRes) => {
      if (upstreamRes.headers["x-tabbify-limit"] === "fuel") this.onLimit?.("fuel");
      res.writeHead(
        upstreamRes.statusCode ?? 502,
        upstreamRes.statusMessage,
        endToEnd(upstreamRes.rawHeaders).headers,
      );
      upstreamRes.pipe(res);
      upstreamRes.on("error", () => res.destroy());
    });
    upstreamReq.on("error", (err: NodeJS.ErrnoException) => {
      // A pooled connection the app closed just as we reused it (its keep-alive timeout) fails
      // before any answer; a request with no body and no side effects can safely go again on a
      // fresh one.
      const idempotent = req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS";
      if (
        mayRetry &&
        idempotent &&
        !request.hasBody &&
        upstreamReq.reusedSocket &&
        err.code === "ECONNRESET" &&
        !res.headersSent
      ) {
        this.send(req, res, target, request, false);
        return;
      }
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: `app did not answer: ${err.message}` }));
      } else {
        res.destroy();
      }
    });
    // A client that goes away mid-request must not leave the upstream request hanging.
    res.on("close", () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    // Without Content-Length or Transfer-Encoding a request has no body (RFC 9112 §6.3), so
    // there is nothing to pipe and the request can end at once.
    if (request.hasBody) req.pipe(upstreamReq);
    else upstreamReq.end();
  }

  private forwardUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    this.lastActivity = Date.now();
    const refuse = () =>
      socket.end("HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    if (this.woken(() => this.forwardUpgrade(req, socket, head), refuse)) return;
    const target = this.target;
    if (!target) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const release = target.acquire();
    socket.on("close", release);
    socket.on("error", () => socket.destroy());
    const { headers, upgrade } = endToEnd(req.rawHeaders);
    headers.push("Connection", "upgrade");
    if (upgrade !== undefined) headers.push("Upgrade", upgrade);
    const upstreamReq = http.request({
      host: target.upstream.host,
      port: target.upstream.port,
      method: req.method,
      path: req.url,
      headers,
    });
    upstreamReq.on("upgrade", (upstreamRes, upstreamSocket, upstreamHead) => {
      const lines = [`HTTP/1.1 ${upstreamRes.statusCode} ${upstreamRes.statusMessage ?? ""}`];
      for (let i = 0; i < upstreamRes.rawHeaders.length; i += 2) {
        lines.push(`${upstreamRes.rawHeaders[i]}: ${upstreamRes.rawHeaders[i + 1]}`);
      }
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.on("error", () => socket.destroy());
      upstreamSocket.on("close", () => socket.destroy());
      socket.on("close", () => upstreamSocket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    upstreamReq.on("response", (upstreamRes) => {
      // The app declined the upgrade: relay its plain answer and close.
      const lines = [
        `HTTP/1.1 ${upstreamRes.statusCode} ${upstreamRes.statusMessage ?? ""}`,
        "connection: close",
      ];
      const passed = endToEnd(upstreamRes.rawHeaders).headers;
      for (let i = 0; i < passed.length; i += 2) lines.push(`${passed[i]}: ${passed[i + 1]}`);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      upstreamRes.pipe(socket);
    });
    upstreamReq.on("error", (err) => {
      this.logger.debug("upgrade to app failed", { error: err.message });
      socket.end("HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    });
    upstreamReq.end();
  }
}
