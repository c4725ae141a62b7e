import http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { APP_PORT, appAddress, hostPort, type MeshMode, parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { connectionListed, HOP_BY_HOP, joinHeader, withoutNamed } from "../core/http-hop.js";
import type { Logger } from "../core/log.js";
import { silentLogger } from "../core/log.js";
import { SESSION_COOKIE, withoutCookie } from "../dashboard/cookies.js";
import { toNodeError } from "./errors.js";

/** Requests whose path starts with this go to the app proxy, before any framework sees them. */
export const APP_PREFIX = "/app/";

export interface AppProxyOptions {
  mesh: MeshMode;
  /** Whether the roster has a live runner for this (lowercased) app uuid. */
  hasApp: (uuid: string) => boolean;
  /**
   * Asked only once an app off the roster did not answer: whether the registry knows it (so it is
   * stopped, 503 `APP_STOPPED`, rather than unknown, 404).
   */
  knownApp?: (uuid: string) => Promise<boolean>;
  logger?: Logger;
  /** Give up dialling an app after this long (a ULA with no route can hang for minutes). */
  connectTimeoutMs?: number;
  /** Port apps listen on; only tests and benches pick another. */
  appPort?: number;
  /**
   * Asked when an app has not begun to answer after {@link firstByteProbeMs} (and again every
   * {@link firstByteProbeMs} while it stays silent): whether the host that runs it is lost. True
   * ends the request with a 502 (the host's other connections are ended by whoever marks it lost);
   * false or undefined (not known, or on this host) keeps waiting, however slow the app is.
   */
  hostLost?: (uuid: string) => Promise<boolean | undefined>;
  /** Default 200 ms. */
  firstByteProbeMs?: number;
  /**
   * Whether the app's runner is known lost (its host went silent): a new connection to it gets
   * only {@link LOST_CONNECT_TIMEOUT_MS}, enough for a host that came back.
   */
  isLost?: (uuid: string) => boolean;
}

/** A connection to an app that was lost with its host: a host that is back answers in one RTT. */
export const LOST_CONNECT_TIMEOUT_MS = 600;

/** What a uuid segment of the URL resolves to; pure functions of it, so cached. */
interface AppAddress {
  uuid: string;
  /** Host for net.connect: bare IPv6 or IPv4. */
  host: string;
  /** `addr:port` with brackets, for the Host header and messages. */
  authority: string;
  prefix: string;
}

interface Target {
  app: AppAddress;
  /** Path and query for the app, the `/app/<uuid>` prefix stripped. */
  path: string;
}

/**
 * Hop-by-hop headers plus the ones the proxy sets itself; `upgrade` and `connection` are re-added
 * for upgrade requests only.
 */
const droppedRequestHeaders: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-forwarded-prefix",
  // Re-added without the dashboard's session cookie: an app must never see an operator's session.
  "cookie",
]);

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
  private readonly knownApp: (uuid: string) => Promise<boolean>;
  private readonly logger: Logger;
  private readonly connectTimeoutMs: number;
  private readonly appPort: number;
  private readonly hostLost: ((uuid: string) => Promise<boolean | undefined>) | undefined;
  private readonly firstByteProbeMs: number;
  private readonly isLost: (uuid: string) => boolean;
  private readonly agent: http.Agent;
  /**
   * The uuid segment as it appears in URLs → its address. Parsing and derivation (a hash) run
   * once per app, not per request; bounded by clearing.
   */
  private readonly addresses = new Map<string, AppAddress>();
  /** Open tunnels (WebSockets): the client's socket → the app address it leads to. */
  private readonly tunnels = new Map<Duplex, string>();
  /** uuid → when its outage was last logged, so a down app under load logs once a minute. */
  private readonly outageLoggedAt = new Map<string, number>();

  constructor(opts: AppProxyOptions) {
    this.mesh = opts.mesh;
    this.hasApp = opts.hasApp;
    this.knownApp = opts.knownApp ?? (async () => false);
    this.logger = opts.logger ?? silentLogger;
    // A lost mesh host must turn into a 502 quickly (no hang past 2 s); a live app on this host
    // or across a healthy tunnel connects in well under a millisecond to a few RTTs.
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1500;
    this.appPort = opts.appPort ?? APP_PORT;
    this.hostLost = opts.hostLost;
    this.firstByteProbeMs = opts.firstByteProbeMs ?? 200;
    this.isLost = opts.isLost ?? (() => false);
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
    // First: a peer that resets the connection while we answer (even a refusal) must not become
    // an uncaught exception in the node.
    socket.on("error", () => socket.destroy());
    let target: Target;
    try {
      target = this.resolve(req.url ?? "/");
    } catch (err) {
      writeRawError(socket, err);
      return;
    }
    const proxyReq = http.request({
      host: target.app.host,
      port: this.appPort,
      method: req.method,
      path: target.path,
      headers: forwardHeaders(req, target.app, true).headers,
      agent: false,
    });
    this.watchConnect(proxyReq, target.app);
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
      this.tunnels.set(socket, target.app.host);
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
      if (!socket.writable) return socket.destroy();
      void this.unreachable(target.app, err).then((answer) => {
        if (socket.writable) writeRawError(socket, answer);
      });
    });
    socket.on("close", () => proxyReq.destroy());
    proxyReq.end();
  }

  /**
   * Ends every connection to an app (pooled, carrying a request, or a tunnel) once its host is known lost:
   * a request on a kept-alive socket to a dead peer would otherwise wait for TCP to give up, and
   * now answers 502 at once.
   */
  dropApp(uuid: string): void {
    this.dropAddress(appAddress(parseAppUuid(uuid), this.mesh));
  }

  /** {@link dropApp} by address: the app ULAs a lost mesh host served. Tunnels to it end too. */
  dropAddress(host: string): void {
    for (const [socket, to] of this.tunnels) if (to === host) socket.destroy();
    const prefix = `${host}:${this.appPort}:`;
    for (const pool of [this.agent.freeSockets, this.agent.sockets]) {
      for (const [name, sockets] of Object.entries(pool)) {
        if (!name.startsWith(prefix)) continue;
        for (const socket of [...(sockets ?? [])])
          socket.destroy(new Error(`the host serving ${host} is lost`));
      }
    }
  }

  /**
   * Ends open tunnels (WebSockets): they live as long as their clients, and would hold a closing
   * node's server open. Requests in flight are left to finish.
   */
  closeTunnels(): void {
    for (const socket of this.tunnels.keys()) socket.destroy();
    this.tunnels.clear();
  }

  /**
   * Drops pooled connections and ends what is left. Call once the server has stopped taking
   * requests and those in flight are answered: a request whose upstream socket is destroyed here
   * answers 502.
   */
  close(): void {
    this.closeTunnels();
    this.agent.destroy();
  }

  private resolve(url: string): Target {
    let end = APP_PREFIX.length;
    while (end < url.length && !isUuidEnd(url.charCodeAt(end))) end++;
    const raw = url.slice(APP_PREFIX.length, end);
    let app = this.addresses.get(raw);
    if (!app) {
      const uuid = parseAppUuid(raw);
      const host = appAddress(uuid, this.mesh);
      app = { uuid, host, authority: hostPort(host, this.appPort), prefix: `/app/${raw}` };
      if (this.addresses.size >= 4096) this.addresses.clear();
      this.addresses.set(raw, app);
    }
    const rest = url.slice(end);
    const path = rest === "" ? "/" : rest.charCodeAt(0) === 63 ? `/${rest}` : rest;
    return { app, path };
  }

  private forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    target: Target,
    isRetry: boolean,
  ): void {
    const { headers, hasBody } = forwardHeaders(req, target.app, false);
    const proxyReq = http.request({
      host: target.app.host,
      port: this.appPort,
      method: req.method,
      path: target.path,
      headers,
      // The retry dials afresh: the pool may hold more sockets the app closed at the same moment
      // (a runner that retires closes all its idle ones at once).
      agent: isRetry ? false : this.agent,
    });
    this.watchConnect(proxyReq, target.app);
    this.watchFirstByte(proxyReq, target.app);

    proxyReq.on("response", (proxyRes) => {
      const { headers: out, eventStream } = responseHeaders(proxyRes.rawHeaders);
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, out);
      // Server-sent events must reach the client before the first event, not with it.
      if (eventStream) res.flushHeaders();
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
      if (res.destroyed) return;
      void this.unreachable(target.app, err).then((answer) => {
        if (!res.destroyed && !res.headersSent) sendError(res, answer);
      });
    });
    res.on("close", () => {
      // The client went away first: stop the app's work on its behalf.
      if (!res.writableFinished) proxyReq.destroy();
    });
    if (hasBody) req.pipe(proxyReq);
    else proxyReq.end();
  }

  private watchConnect(proxyReq: http.ClientRequest, app: AppAddress): void {
    proxyReq.on("socket", (socket) => {
      // A pooled socket is connected already: the common case costs nothing more.
      if (!socket.connecting) return;
      // An app nobody registered gets a short wait: an unroutable ULA would otherwise hold a
      // request for an app that does not exist for the full connect timeout.
      const timeoutMs = !this.hasApp(app.uuid)
        ? Math.min(this.connectTimeoutMs, 1000)
        : this.isLost(app.uuid)
          ? Math.min(this.connectTimeoutMs, LOST_CONNECT_TIMEOUT_MS)
          : this.connectTimeoutMs;
      const timer = setTimeout(() => {
        const err = new Error(`connect timeout after ${timeoutMs} ms`) as NodeJS.ErrnoException;
        err.code = "ETIMEDOUT";
        proxyReq.destroy(err);
      }, timeoutMs);
      socket.once("connect", () => clearTimeout(timer));
      socket.once("close", () => clearTimeout(timer));
    });
  }

  /**
   * A request on a kept-alive connection to a host that vanished gets no answer and no error
   * until TCP gives up (minutes): while the app is silent, ask every {@link firstByteProbeMs}
   * whether its host is lost, and end the request (502) when it is. A slow app on a host that
   * answers waits as long as it needs.
   */
  private watchFirstByte(proxyReq: http.ClientRequest, app: AppAddress): void {
    const hostLost = this.hostLost;
    if (!hostLost) return;
    let timer: NodeJS.Timeout | undefined;
    let answered = false;
    const check = () => {
      void hostLost(app.uuid)
        .catch(() => undefined)
        .then((lost) => {
          if (answered) return;
          if (lost) {
            const err = new Error(`the host running app ${app.uuid} is lost`) as NodeJS.ErrnoException;
            err.code = "EHOSTDOWN";
            proxyReq.destroy(err);
          } else timer = setTimeout(check, this.firstByteProbeMs);
        });
    };
    timer = setTimeout(check, this.firstByteProbeMs);
    const stop = () => {
      answered = true;
      clearTimeout(timer);
    };
    proxyReq.once("response", stop);
    proxyReq.once("close", stop);
  }

  /**
   * Why an app did not answer. Whether a runner for it is on the roster is asked only here: the
   * address is a pure function of the uuid, so an app not (yet) on the roster is still dialled (a
   * runner that just started answers before its first heartbeat lands); only when nothing
   * answers does the roster decide: a runner on it (or lost lately) means a known app that is
   * down (502); none means an app the registry knows that runs nowhere, stopped (503), or no such
   * app (404). Never rejects.
   */
  private async unreachable(app: AppAddress, err: NodeJS.ErrnoException): Promise<TabbifyError> {
    const reason = err.code ?? err.message;
    if (!this.hasApp(app.uuid)) {
      if (await this.knownApp(app.uuid).catch(() => false)) {
        return new TabbifyError(
          "APP_STOPPED",
          `app ${app.uuid} is stopped: it runs nowhere (tcli start ${app.uuid} starts it)`,
        );
      }
      return new TabbifyError(
        "APP_NOT_FOUND",
        `no runner for app ${app.uuid} is on the roster and nothing answers at its address`,
      );
    }
    const now = Date.now();
    if (now - (this.outageLoggedAt.get(app.uuid) ?? 0) > 60_000) {
      if (this.outageLoggedAt.size >= 4096) this.outageLoggedAt.clear();
      this.outageLoggedAt.set(app.uuid, now);
      this.logger.warn("app not answering", { app: app.uuid, address: app.authority, reason });
    }
    return new TabbifyError(
      "APP_UNREACHABLE",
      `app ${app.uuid} is not answering at http://${app.authority} (${reason})`,
    );
  }
}

/**
 * The request headers for the app, from `rawHeaders` in one pass: `req.headers` is built lazily
 * on first access, and building it costs more per request than everything else this does.
 */
function forwardHeaders(
  req: http.IncomingMessage,
  app: AppAddress,
  upgrade: boolean,
): { headers: string[]; hasBody: boolean } {
  const raw = req.rawHeaders;
  let out: string[] = [];
  let connection: string | undefined;
  let host: string | undefined;
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  let priorHost: string | undefined;
  let priorPrefix: string | undefined;
  let upgradeTo: string | undefined;
  let hasBody = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (!droppedRequestHeaders.has(lower)) {
      if (lower === "content-length") hasBody = true;
      out.push(name, value);
      continue;
    }
    switch (lower) {
      case "connection":
        connection = joinHeader(connection, value);
        break;
      case "transfer-encoding":
        hasBody = true;
        break;
      case "host":
        host ??= value;
        break;
      case "upgrade":
        upgradeTo ??= value;
        break;
      case "x-forwarded-for":
        priorFor = joinHeader(priorFor, value);
        break;
      case "x-forwarded-proto":
        priorProto = joinHeader(priorProto, value);
        break;
      case "x-forwarded-host":
        priorHost = joinHeader(priorHost, value);
        break;
      case "x-forwarded-prefix":
        priorPrefix = joinHeader(priorPrefix, value);
        break;
      case "cookie": {
        const kept = value.includes(SESSION_COOKIE) ? withoutCookie(value, SESSION_COOKIE) : value;
        if (kept !== undefined) out.push(name, kept);
        break;
      }
    }
  }
  const extraHop = connectionListed(connection);
  if (extraHop) out = withoutNamed(out, extraHop);
  const clientIp = req.socket.remoteAddress ?? "";
  const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  out.push(
    "Host",
    app.authority,
    "X-Forwarded-For",
    priorFor ? `${priorFor}, ${clientIp}` : clientIp,
    "X-Forwarded-Proto",
    priorProto ?? proto,
    "X-Forwarded-Host",
    priorHost ?? host ?? "",
    "X-Forwarded-Prefix",
    priorPrefix !== undefined ? `${priorPrefix.replace(/\/+$/, "")}${app.prefix}` : app.prefix,
  );
  if (upgrade) out.push("Connection", "Upgrade", "Upgrade", upgradeTo ?? "websocket");
  return { headers: out, hasBody };
}

/** The app's response headers for the client, in one pass over `rawHeaders`. */
function responseHeaders(raw: string[]): { headers: string[]; eventStream: boolean } {
  let out: string[] = [];
  let connection: string | undefined;
  let eventStream = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === "connection") connection = joinHeader(connection, value);
      continue;
    }
    if (lower === "content-type" && value.startsWith("text/event-stream")) eventStream = true;
    out.push(name, value);
  }
  const extraHop = connectionListed(connection);
  if (extraHop) out = withoutNamed(out, extraHop);
  return { headers: out, eventStream };
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
