import http from "node:http";
import { Readable } from "node:stream";
import { routeEgressThrough } from "./egress-client.js";
import { startEgressProxy } from "./egress-proxy.js";

/**
 * The platform side of a handler app: serves a fetch-style handler on PORT, sends its outbound
 * HTTP(S) through the egress proxy, and keeps the cache API to the contract's namespaces. It
 * imports nothing but node: builtins, so a supervisor runs it from its own install next to a
 * pulled handler bundle and `deploy --local` bundles it into the single executable. The
 * contract's lists arrive from the platform (`TABBIFY_CONTRACT_EGRESS`, `TABBIFY_CONTRACT_CACHE`),
 * never from the handler's code.
 *
 * Egress: hosted, the runner owns the proxy (`TABBIFY_EGRESS_PROXY`) and the kernel refuses the
 * workload's other connections; this process only routes `fetch` and `http(s)` through it.
 * Without a runner's proxy (`deploy --local`), it starts the same proxy in-process.
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
  if (config.egress !== "*") {
    let proxyUrl = env.TABBIFY_EGRESS_PROXY;
    if (!proxyUrl) {
      const own = await startEgressProxy({
        allow: config.egress,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      proxyUrl = own.url;
    }
    await routeEgressThrough(proxyUrl, env.PORT ? Number(env.PORT) : undefined);
  }
  installCache(config.cache);
  const handler = handlerOf(await load());
  const port = Number(env.PORT ?? 8080);
  const server = await serveHandler(handler, port, env.HOST);
  const shutdown = () => server.close(() => process.exit(0));
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  return server;
}
