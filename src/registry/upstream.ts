import { type ChildProcess, spawn } from "node:child_process";
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import { pipeline } from "node:stream/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import { backoffDelay } from "../core/backoff.js";
import { TabbifyError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { RegistryClient } from "./client.js";

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) and the ones a proxy must not pass on: `expect` (we have
 * already accepted the body), `host` (set to the upstream's), `authorization` (the upstream is
 * anonymous on loopback; our registry token means nothing to it and must not leak).
 */
const dropRequestHeaders = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
  "host",
  "authorization",
]);
const dropResponseHeaders = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "www-authenticate",
]);

/**
 * Streams /v2 requests to an upstream registry (the seed's wrapper design): bodies are piped
 * both ways without buffering; `Location` headers that point at the upstream are rewritten to the
 * host the client used. The auth gate runs before `forward`, so tenancy stays enforced here, and
 * only paths the gate could route are forwarded, rebuilt from their validated parts: the
 * upstream's own decoding, path cleaning and redirects are never relied on.
 */
export class UpstreamProxy {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  readonly base: URL;

  constructor(baseUrl: string) {
    try {
      this.base = new URL(baseUrl);
    } catch {
      throw new TabbifyError("CONFIG_INVALID", `upstream URL "${baseUrl}" is not a URL`);
    }
    if (this.base.protocol !== "http:") {
      throw new TabbifyError("CONFIG_INVALID", `upstream URL "${baseUrl}" must be http:// (loopback)`);
    }
  }

  /** `path` is what the upstream is asked for: the gate's canonical form of the request's path. */
  async forward(request: FastifyRequest, reply: FastifyReply, path: string): Promise<void> {
    const headers: OutgoingHttpHeaders = {};
    for (const [key, value] of Object.entries(request.headers)) {
      if (value !== undefined && !dropRequestHeaders.has(key)) headers[key] = value;
    }
    headers.host = this.base.host;
    const ourOrigin = `${request.protocol}://${request.headers.host ?? "localhost"}`;
    const upstreamRequest = http.request({
      protocol: this.base.protocol,
      hostname: this.base.hostname,
      port: this.base.port,
      method: request.method,
      path,
      headers,
      agent: this.agent,
    });
    const response = new Promise<http.IncomingMessage>((resolve, reject) => {
      upstreamRequest.once("response", resolve);
      upstreamRequest.once("error", reject);
    });
    const hasBody =
      request.headers["content-length"] !== undefined || request.headers["transfer-encoding"] !== undefined;
    const sent = hasBody ? pipeline(request.raw, upstreamRequest) : Promise.resolve(upstreamRequest.end());
    let upstreamResponse: http.IncomingMessage;
    try {
      upstreamResponse = await response;
    } catch {
      request.raw.resume();
      throw new TabbifyError(
        "UPSTREAM_UNAVAILABLE",
        `the upstream registry at ${this.base.host} did not answer`,
      );
    }
    // The upstream may answer before reading the whole body (an error); its outcome is the reply.
    sent.catch(() => {});
    reply.hijack();
    const out = reply.raw;
    out.writeHead(
      upstreamResponse.statusCode ?? 502,
      this.responseHeaders(upstreamResponse.headers, ourOrigin),
    );
    await pipeline(upstreamResponse, out).catch(() => {
      out.destroy();
    });
  }

  private responseHeaders(source: IncomingHttpHeaders, ourOrigin: string): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {};
    for (const [key, value] of Object.entries(source)) {
      if (value === undefined || dropResponseHeaders.has(key)) continue;
      out[key] =
        key === "location" && typeof value === "string" ? this.rewriteLocation(value, ourOrigin) : value;
    }
    return out;
  }

  private rewriteLocation(location: string, ourOrigin: string): string {
    let parsed: URL;
    try {
      parsed = new URL(location, this.base);
    } catch {
      return location;
    }
    if (parsed.host !== this.base.host) return location;
    return `${ourOrigin}${parsed.pathname}${parsed.search}`;
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface UpstreamChildOptions {
  /** A shell command line; it is exec'd so signals reach the registry itself. */
  command: string;
  /** Probed at start until it answers. */
  url: string;
  log?: Logger;
  /** How long `start` waits for the first answer. */
  readyTimeoutMs?: number;
}

/**
 * Supervises the upstream registry as a child: started once, restarted with exponential backoff
 * (1 s doubling to 30 s, back to 1 s after a minute of uptime) when it dies, stopped with SIGTERM
 * then SIGKILL on close. It dies with the registry even when the registry is SIGKILLed (the
 * kernel's parent-death signal, set through util-linux's setpriv).
 */
export class UpstreamChild {
  private child: ChildProcess | undefined;
  private stopping = false;
  /** Exits in a row, each soon after its start; resets once a run lasts a minute. */
  private quickExits = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: UpstreamChildOptions) {
    this.log = opts.log ?? silentLogger;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.spawnChild();
    await this.waitReady(this.opts.readyTimeoutMs ?? 30_000);
  }

  private spawnChild(): void {
    const startedAt = Date.now();
    // setpriv asks the kernel to SIGKILL the child when this process dies, however it dies: a
    // SIGKILLed registry runs no cleanup, and an orphaned upstream would keep its port and data.
    const child = spawn(
      "setpriv",
      ["--pdeathsig", "KILL", "--", "/bin/sh", "-c", `exec ${this.opts.command}`],
      { stdio: ["ignore", "inherit", "inherit"], env: upstreamEnv(process.env) },
    );
    child.once("error", (err) => this.log.error("upstream registry could not start", { error: String(err) }));
    this.child = child;
    this.log.info("upstream registry started", { pid: child.pid });
    child.once("exit", (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.stopping) return;
      this.quickExits = Date.now() - startedAt > 60_000 ? 1 : this.quickExits + 1;
      const delay = backoffDelay(this.quickExits, 1000, 30_000);
      this.log.warn("upstream registry exited; restarting", { code, signal, inMs: delay });
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.stopping) this.spawnChild();
      }, delay);
    });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const upstream = new RegistryClient({ url: new URL(this.opts.url).origin, timeoutMs: 1000 });
    while (Date.now() < deadline) {
      try {
        // The spec's API version check: 200, or 401 from a registry that wants a token.
        const res = await upstream.send("GET", "/v2/");
        await res.body?.cancel();
        if (res.status === 200 || res.status === 401) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new TabbifyError(
      "UPSTREAM_UNAVAILABLE",
      `upstream registry did not answer at ${upstream.base} in ${timeoutMs} ms`,
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * The child's environment: ours without `REGISTRY_*`. Those are this registry's settings (auth
 * URL, S3 bucket, …), and Distribution's registry reads every `REGISTRY_<SECTION>_<KEY>` as a
 * config override, so `REGISTRY_AUTH_URL` alone would make it refuse to start.
 */
export function upstreamEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith("REGISTRY_")));
}
