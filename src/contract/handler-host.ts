import http from "node:http";
import net from "node:net";
import { Readable } from "node:stream";
import tls from "node:tls";

/**
 * The platform side of a handler app: serves a fetch-style handler on PORT, and enforces the
 * contract inside the workload process (the egress guard and the cache API's namespaces). It
 * imports nothing but node: builtins, so the node copies it next to an uploaded handler bundle and
 * `deploy --local` bundles it into the single executable. The contract's lists arrive from the
 * platform (`TABBIFY_CONTRACT_EGRESS`, `TABBIFY_CONTRACT_CACHE`, set after the app's own env),
 * never from the handler's code.
 */

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface HostConfig {
  /** Hosts (`name` or `name:port`) the handler may connect to; `*` when egress is dynamic. */
  egress: string[] | "*";
  /** Cache namespaces the handler may open; `*` when they are dynamic. */
  cache: string[] | "*";
}

export function parseList(value: string | undefined): string[] | "*" {
  if (value === undefined || value === "*") return "*";
  return value.split(",").filter((x) => x !== "");
}

/** The handler a module exports: default function, default `{fetch}`, or a named `handler`. */
export function handlerOf(mod: Record<string, unknown>): FetchHandler {
  const candidates = [mod.default, mod.handler];
  for (const c of candidates) {
    if (typeof c === "function") return c as FetchHandler;
    if (c && typeof (c as { fetch?: unknown }).fetch === "function") {
      const obj = c as { fetch: FetchHandler };
      return (req) => obj.fetch(req);
    }
  }
  throw new Error("the handler module exports no handler (default export or `handler`)");
}

function allowedBy(allow: string[], host: string, port: number): boolean {
  const name = host.replace(/^\[|\]$/g, "").toLowerCase();
  for (const entry of allow) {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry.toLowerCase());
    if (!m) continue;
    const entryHost = m[1]!.replace(/^\[|\]$/g, "");
    if (entryHost !== name) continue;
    if (m[2] !== undefined ? Number(m[2]) === port : port === 80 || port === 443) return true;
  }
  return false;
}

/** Where a net/tls connect call goes: (port, host), ({port, host}) or a unix path. */
function targetOf(args: unknown[]): { host: string; port: number } | undefined {
  const [a, b] = args;
  if (typeof a === "object" && a !== null) {
    const o = a as { host?: string; port?: number | string; path?: string; socketPath?: string };
    // A unix socket has a path and no port (http's options carry the request path too).
    if ((o.port === undefined || o.port === null || o.port === "") && (o.path || o.socketPath))
      return undefined;
    return { host: o.host ?? "localhost", port: Number(o.port) };
  }
  if (typeof a === "number" || (typeof a === "string" && /^\d+$/.test(a))) {
    return { host: typeof b === "string" ? b : "localhost", port: Number(a) };
  }
  return undefined;
}

/**
 * Refuses outbound TCP/TLS connections to hosts outside the contract: `fetch`, `http(s).request`
 * and raw `net.connect` all go through these functions. A refused connection is a socket that
 * fails with EGRESS_REFUSED, and the refusal is written to the app's log (stderr).
 */
export function installEgressGuard(allow: string[] | "*", log: (line: string) => void): void {
  if (allow === "*") return;
  const wrap = <F extends (...args: never[]) => net.Socket>(original: F): F =>
    function guarded(this: unknown, ...args: unknown[]) {
      const target = targetOf(args);
      if (target && !allowedBy(allow, target.host, target.port)) {
        const message = `egress to ${target.host}:${target.port} refused: not in this handler's contract (allowed: ${allow.join(", ") || "none"})`;
        log(`tabbify: ${message}`);
        const socket = new net.Socket();
        const err = Object.assign(new Error(message), { code: "EGRESS_REFUSED" });
        process.nextTick(() => socket.destroy(err));
        return socket;
      }
      return (original as unknown as (...a: unknown[]) => net.Socket).apply(this, args);
    } as unknown as F;
  net.connect = wrap(net.connect);
  // http's agents captured net.createConnection when they loaded.
  http.Agent.prototype.createConnection = wrap(
    http.Agent.prototype.createConnection as unknown as (...args: never[]) => net.Socket,
  ) as unknown as typeof http.Agent.prototype.createConnection;
  net.createConnection = wrap(net.createConnection);
  tls.connect = wrap(
    tls.connect as unknown as (...args: never[]) => net.Socket,
  ) as unknown as typeof tls.connect;
}

interface CacheEntry {
  value: unknown;
  expiresAt: number;
}

/** `cache(namespace)` for handlers (`import { cache } from "tabbify:cache"`): per process, in memory. */
export function installCache(allowed: string[] | "*"): void {
  const spaces = new Map<string, Map<string, CacheEntry>>();
  (globalThis as Record<string, unknown>).__tabbifyCache = (namespace: string) => {
    if (allowed !== "*" && !allowed.includes(namespace)) {
      throw new Error(`cache namespace "${namespace}" is not in this handler's contract`);
    }
    let space = spaces.get(namespace);
    if (!space) {
      space = new Map();
      spaces.set(namespace, space);
    }
    const map = space;
    return {
      get(key: string): unknown {
        const e = map.get(key);
        if (!e) return undefined;
        if (e.expiresAt <= performance.now()) {
          map.delete(key);
          return undefined;
        }
        return e.value;
      },
      set(key: string, value: unknown, ttlSeconds = 300): void {
        map.set(key, { value, expiresAt: performance.now() + ttlSeconds * 1000 });
      },
      delete(key: string): boolean {
        return map.delete(key);
      },
    };
  };
}

/** Serves the handler on `port` (0 picks one); resolves once listening. */
export function serveHandler(handler: FetchHandler, port: number, host?: string): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    try {
      const url = `http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`;
      const method = req.method ?? "GET";
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (Array.isArray(v)) for (const x of v) headers.append(k, x);
        else if (v !== undefined) headers.set(k, v);
      }
      const hasBody = method !== "GET" && method !== "HEAD";
      const init: RequestInit & { duplex?: "half" } = { method, headers };
      if (hasBody) {
        init.body = Readable.toWeb(req) as ReadableStream;
        init.duplex = "half";
      }
      const response = await handler(new Request(url, init));
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, key) => {
        out[key] = key === "set-cookie" ? response.headers.getSetCookie() : value;
      });
      res.writeHead(response.status, out);
      if (!response.body || method === "HEAD") {
        res.end();
        return;
      }
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
      res.end();
    } catch (err) {
      process.stderr.write(`tabbify: the handler threw: ${(err as Error)?.stack ?? String(err)}\n`);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("internal error\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** Everything a handler process does before the handler's first line runs, then serves it. */
export async function runHandlerHost(
  load: () => Promise<Record<string, unknown>>,
  config: HostConfig,
  env: NodeJS.ProcessEnv,
): Promise<http.Server> {
  installEgressGuard(config.egress, (line) => process.stderr.write(`${line}\n`));
  installCache(config.cache);
  const handler = handlerOf(await load());
  const port = Number(env.PORT ?? 8080);
  const server = await serveHandler(handler, port, env.HOST);
  const shutdown = () => server.close(() => process.exit(0));
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  return server;
}
