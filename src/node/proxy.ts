import http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { APP_PORT, appAddress, hostPort, type MeshMode, parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { silentLogger } from "../core/log.js";
import { toNodeError } from "./errors.js";

/** Requests whose path starts with this go to the app proxy, before any framework sees them. */
export const APP_PREFIX = "/app/";

export interface AppProxyOptions {
  mesh: MeshMode;
  /** Whether the roster has a live runner for this (lowercased) app uuid. */
  hasApp: (uuid: string) => boolean;
  logger?: Logger;
  /** Give up dialling an app after this long (a ULA with no route can hang for minutes). */
  connectTimeoutMs?: number;
  /** Port apps listen on; only tests and benches pick another. */
  appPort?: number;
}

interface Target {
  uuid: string;
  /** Host for net.connect: bare IPv6 or IPv4. */
  host: string;
  /** `addr:port` with brackets, for the Host header and messages. */
  authority: string;
  /** Path and query for the app, the `/app/<uuid>` prefix stripped. */
  path: string;
  prefix: string;
  /**
   * Whether a runner for the app is on the roster. The address is a pure function of the uuid,
   * so an app not (yet) on the roster is still dialled: a runner that just started answers
   * before its first heartbeat lands. Only when nothing answers does "not on the roster" decide
   * between 404 (no such app) and 502 (a known app that is down).
   */
  known: boolean;
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones the proxy sets itself; `upgrade` and
 * `connection` are re-added for upgrade requests only.
 */
const droppedRequestHeaders = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-forwarded-prefix",
]);
const droppedResponseHeaders = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Header names a Connection header lists are hop-by-hop too. */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (!value) return undefined;
  const joined = Array.isArray(value) ? value.join(",") : value;
  const tokens = joined
    .split(",")
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== "" && t !== "close" && t !== "keep-alive" && t !== "upgrade");
  return tokens.length > 0 ? new Set(tokens) : undefined;
}

function isUuidEnd(code: number): boolean {
  return code === 47 /* / */ || code === 63 /* ? */;
}

/**
 * The node's `/app/<uuid>/…` door: a streaming reverse proxy to `<app address>:8730`. It runs on
 * the raw node:http request, never through the framework, so it costs what a piping proxy costs.
 */
export class AppProxy {
  private readonly mesh: MeshMode;
  private readonly hasApp: (uuid: string) => boolean;
  private readonly logger: Logger;
  private readonly connectTimeoutMs: number;
  private readonly appPort: number;
  private readonly agent: http.Agent;
  /** uuid → [host, authority]; derivation is a hash, so cache it (bounded by clearing). */
  private readonly addresses = new Map<string, [string, string]>();
  private readonly tunnels = new Set<Duplex>();
  /** uuid → when its outage was last logged, so a down app under load logs once a minute. */
  private readonly outageLoggedAt = new Map<string, number>();

  constructor(opts: AppProxyOptions) {
    this.mesh = opts.mesh;
    this.hasApp = opts.hasApp;
    this.logger = opts.logger ?? silentLogger;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.appPort = opts.appPort ?? APP_PORT;
    // LIFO keeps the hottest sockets warm; free sockets idle-time out before a typical app's
    // 5 s keep-alive timeout would close them under us.
    this.agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: "lifo", timeout: 4000 });
  }

  /** Whether a request URL belongs to the app proxy. */
  static matches(url: string | undefined): boolean {
    return url?.startsWith(APP_PREFIX) === true;
  }

  handleRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    let target: Target;
    try {
      target = this.resolve(req.url ?? "/");
    } catch (err) {
      sendError(res, err);
      req.resume();
      return;
    }
    this.forward(req, res, target, false);
  }

  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    let target: Target;
    try {
      target = this.resolve(req.url ?? "/");
    } catch (err) {
      writeRawError(socket, err);
      return;
    }
    socket.on("error", () => socket.destroy());
    const proxyReq = http.request({
      host: target.host,
      port: this.appPort,
      method: req.method,
      path: target.path,
      headers: forwardHeaders(req, target, true),
      agent: false,
    });
    this.watchConnect(proxyReq, target);
    proxyReq.on("upgrade", (proxyRes, proxySocket, proxyHead) => {
      const lines = [
        `HTTP/1.1 ${proxyRes.statusCode ?? 101} ${proxyRes.statusMessage ?? "Switching Protocols"}`,
      ];
      const raw = proxyRes.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (proxyHead.length > 0) socket.write(proxyHead);
      if (head.length > 0) proxySocket.write(head);
      (socket as Socket).setNoDelay?.(true);
      proxySocket.setNoDelay(true);
      this.tunnels.add(socket);
      const teardown = () => {
        this.tunnels.delete(socket);
        socket.destroy();
        proxySocket.destroy();
      };
      socket.on("close", teardown);
      proxySocket.on("close", teardown);
      proxySocket.on("error", teardown);
      proxySocket.pipe(socket);
      socket.pipe(proxySocket);
    });
    // The app declined the upgrade: relay its answer, delimited by closing the connection.
    proxyReq.on("response", (proxyRes) => {
      const lines = [`HTTP/1.1 ${proxyRes.statusCode} ${proxyRes.statusMessage ?? ""}`];
      const raw = proxyRes.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!.toLowerCase();
        if (name === "transfer-encoding" || name === "connection" || name === "content-length") continue;
        lines.push(`${raw[i]}: ${raw[i + 1]}`);
      }
      lines.push("connection: close");
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      proxyRes.pipe(socket);
    });
    proxyReq.on("error", (err) => {
      if (socket.writable) writeRawError(socket, this.unreachable(target, err));
      else socket.destroy();
    });
    socket.on("close", () => proxyReq.destroy());
    proxyReq.end();
  }

  /** Drops pooled connections and open tunnels (WebSockets) so a closing node does not hang. */
  close(): void {
    for (const t of this.tunnels) t.destroy();
    this.tunnels.clear();
    this.agent.destroy();
  }

  private resolve(url: string): Target {
    let end = APP_PREFIX.length;
    while (end < url.length && !isUuidEnd(url.charCodeAt(end))) end++;
    const raw = url.slice(APP_PREFIX.length, end);
    const uuid = parseAppUuid(raw);
    const rest = url.slice(end);
    const path = rest === "" ? "/" : rest.charCodeAt(0) === 63 ? `/${rest}` : rest;
    let addr = this.addresses.get(uuid);
    if (!addr) {
      const host = appAddress(uuid, this.mesh);
      addr = [host, hostPort(host, this.appPort)];
      if (this.addresses.size >= 4096) this.addresses.clear();
      this.addresses.set(uuid, addr);
    }
    return { uuid, host: addr[0], authority: addr[1], path, prefix: `/app/${raw}`, known: this.hasApp(uuid) };
  }

  private forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    target: Target,
    isRetry: boolean,
  ): void {
    const proxyReq = http.request({
      host: target.host,
      port: this.appPort,
      method: req.method,
      path: target.path,
      headers: forwardHeaders(req, target, false),
      agent: this.agent,
    });
    this.watchConnect(proxyReq, target);
    const hasBody =
      req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;

    proxyReq.on("response", (proxyRes) => {
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, responseHeaders(proxyRes));
      // Server-sent events must reach the client before the first event, not with it.
      const type = proxyRes.headers["content-type"];
      if (type?.startsWith("text/event-stream")) res.flushHeaders();
      proxyRes.pipe(res);
      proxyRes.on("close", () => {
        // The app died mid-response: cut the client off rather than pretend the body is whole.
        if (!proxyRes.complete) res.destroy();
      });
    });
    proxyReq.on("error", (err: NodeJS.ErrnoException) => {
      // A pooled socket the app closed while idle: safe to retry once when nothing was sent.
      if (!isRetry && !hasBody && proxyReq.reusedSocket && err.code === "ECONNRESET" && !res.headersSent) {
        this.forward(req, res, target, true);
        return;
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (!res.destroyed) sendError(res, this.unreachable(target, err));
    });
    res.on("close", () => {
      // The client went away first: stop the app's work on its behalf.
      if (!res.writableFinished) proxyReq.destroy();
    });
    if (hasBody) req.pipe(proxyReq);
    else proxyReq.end();
  }

  private watchConnect(proxyReq: http.ClientRequest, target: Target): void {
    // An app nobody registered gets a short wait: an unroutable ULA would otherwise hold a
    // request for an app that does not exist for the full connect timeout.
    const timeoutMs = target.known ? this.connectTimeoutMs : Math.min(this.connectTimeoutMs, 1000);
    proxyReq.on("socket", (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => {
        const err = new Error(`connect timeout after ${timeoutMs} ms`) as NodeJS.ErrnoException;
        err.code = "ETIMEDOUT";
        proxyReq.destroy(err);
      }, timeoutMs);
      socket.once("connect", () => clearTimeout(timer));
      socket.once("close", () => clearTimeout(timer));
    });
  }

  private unreachable(target: Target, err: NodeJS.ErrnoException): TabbifyError {
    const reason = err.code ?? err.message;
    if (!target.known) {
      return new TabbifyError(
        "APP_NOT_FOUND",
        `no runner for app ${target.uuid} is on the roster and nothing answers at its address`,
      );
    }
    const now = Date.now();
    if (now - (this.outageLoggedAt.get(target.uuid) ?? 0) > 60_000) {
      if (this.outageLoggedAt.size >= 4096) this.outageLoggedAt.clear();
      this.outageLoggedAt.set(target.uuid, now);
      this.logger.warn("app not answering", { app: target.uuid, address: target.authority, reason });
    }
    return new TabbifyError(
      "APP_UNREACHABLE",
      `app ${target.uuid} is not answering at http://${target.authority} (${reason})`,
    );
  }
}

function forwardHeaders(req: http.IncomingMessage, target: Target, upgrade: boolean): string[] {
  const raw = req.rawHeaders;
  const extraHop = connectionTokens(req.headers.connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (droppedRequestHeaders.has(lower) || extraHop?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  const clientIp = req.socket.remoteAddress ?? "";
  const priorFor = req.headers["x-forwarded-for"];
  const priorProto = req.headers["x-forwarded-proto"];
  const priorHost = req.headers["x-forwarded-host"];
  const priorPrefix = req.headers["x-forwarded-prefix"];
  const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  out.push(
    "Host",
    target.authority,
    "X-Forwarded-For",
    priorFor ? `${priorFor}, ${clientIp}` : clientIp,
    "X-Forwarded-Proto",
    typeof priorProto === "string" ? priorProto : proto,
    "X-Forwarded-Host",
    typeof priorHost === "string" ? priorHost : (req.headers.host ?? ""),
    "X-Forwarded-Prefix",
    typeof priorPrefix === "string" ? `${priorPrefix.replace(/\/+$/, "")}${target.prefix}` : target.prefix,
  );
  if (upgrade) out.push("Connection", "Upgrade", "Upgrade", String(req.headers.upgrade ?? "websocket"));
  return out;
}

function responseHeaders(proxyRes: http.IncomingMessage): string[] {
  const raw = proxyRes.rawHeaders;
  const extraHop = connectionTokens(proxyRes.headers.connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (droppedResponseHeaders.has(lower) || extraHop?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

function sendError(res: http.ServerResponse, err: unknown): void {
  const { status, body } = toNodeError(err);
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function writeRawError(socket: Duplex, err: unknown): void {
  const { status, body } = toNodeError(err);
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}
