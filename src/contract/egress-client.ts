import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";

/**
 * The workload side of the egress proxy: Node 20's `fetch` and `http(s).request` ignore
 * `HTTPS_PROXY`, so a handler host sends them through the proxy itself (a CONNECT tunnel per
 * connection, TLS end to end inside it). Only the workload's own listener (loopback, its PORT)
 * is dialled directly: the kernel refuses the workload every other direct connection, loopback
 * included, so even an allowed loopback host goes through the proxy. This is plumbing,
 * not the enforcement: the proxy decides, and on a host that can, the kernel refuses the
 * workload's connections anywhere else (see src/runner/egress-nft.ts). Node builtins only.
 */

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** An error a refused tunnel fails with: `code` EGRESS_REFUSED, the proxy's reason as message. */
function refusal(status: number, reason: string, target: string): Error {
  const refused = status === 403;
  const message = refused
    ? reason || `egress to ${target} refused by the platform's egress proxy`
    : `the egress proxy answered ${status} for ${target}: ${reason}`;
  return Object.assign(new Error(message), { code: refused ? "EGRESS_REFUSED" : "EGRESS_PROXY_ERROR" });
}

/** A raw TCP socket to `host:port` through the proxy's CONNECT. */
export function tunnel(proxy: URL, host: string, port: number): Promise<net.Socket> {
  const authority = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: proxy.hostname.replace(/^\[|\]$/g, ""),
      port: Number(proxy.port || 80),
    });
    let buffered = Buffer.alloc(0);
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", fail);
    socket.once("connect", () => {
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n\r\n`);
    });
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buffered.length > 16 * 1024) fail(new Error("the egress proxy's answer is too long"));
        return;
      }
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buffered.subarray(0, end).toString("latin1"))?.[1]);
      if (status === 200) {
        socket.off("data", onData);
        socket.off("error", fail);
        const rest = buffered.subarray(end + 4);
        if (rest.length > 0) socket.unshift(rest);
        resolve(socket);
        return;
      }
      // A refusal: the body (one line, the reason) follows and the proxy closes.
      socket.off("data", onData);
      const body: Buffer[] = [buffered.subarray(end + 4)];
      socket.on("data", (c: Buffer) => body.push(c));
      socket.once("close", () =>
        reject(refusal(status, Buffer.concat(body).toString("utf8").trim().slice(0, 500), authority)),
      );
    };
    socket.on("data", onData);
  });
}

/** A tunnel, wrapped in TLS for `https:` (SNI and certificate checks as a direct connection). */
async function connectThrough(
  proxy: URL,
  host: string,
  port: number,
  secure: boolean,
  servername: string | undefined,
  alpn?: string[],
): Promise<net.Socket> {
  const raw = await tunnel(proxy, host, port);
  if (!secure) return raw;
  return new Promise((resolve, reject) => {
    const name = servername ?? host;
    const socket = tls.connect({
      socket: raw,
      ...(net.isIP(name) === 0 ? { servername: name } : {}),
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
  });
}

type Callback = (err: Error | null, socket?: net.Socket) => void;

function direct(host: string, port: number, secure: boolean, servername?: string): net.Socket {
  const bare = host.replace(/^\[|\]$/g, "");
  return secure
    ? tls.connect({ host: bare, port, ...(servername ? { servername } : {}) })
    : net.connect({ host: bare, port });
}

/**
 * Routes `fetch` (undici's global dispatcher, rebuilt with a connector that tunnels) and the
 * global agents of `http`/`https` through `proxyUrl`.
 */
export async function routeEgressThrough(proxyUrl: string, ownPort: number | undefined): Promise<void> {
  const proxy = new URL(proxyUrl);
  const own = (host: string, port: number) => port === ownPort && isLoopbackHost(host);
  const symbol = Symbol.for("undici.globalDispatcher.1");
  // Node builds undici's global Agent when fetch first runs; a data: URL runs it offline.
  await fetch("data:,");
  const current = (globalThis as Record<symbol, unknown>)[symbol] as object | undefined;
  const Agent = current?.constructor as (new (opts: object) => object) | undefined;
  if (!Agent) throw new Error("cannot find fetch's dispatcher to route egress through the proxy");
  (globalThis as Record<symbol, unknown>)[symbol] = new Agent({
    connect: (
      opts: { hostname: string; port: string; protocol: string; servername?: string | null },
      callback: Callback,
    ) => {
      const secure = opts.protocol === "https:";
      const port = Number(opts.port || (secure ? 443 : 80));
      if (own(opts.hostname, port)) {
        const socket = direct(opts.hostname, port, secure, opts.servername ?? undefined);
        socket.once(secure ? "secureConnect" : "connect", () => callback(null, socket));
        socket.once("error", (err) => callback(err));
        return;
      }
      connectThrough(proxy, opts.hostname, port, secure, opts.servername ?? undefined, ["http/1.1"]).then(
        (socket) => callback(null, socket),
        (err: Error) => callback(err),
      );
    },
  });

  const agentFor = (secure: boolean) => {
    const Base = secure ? https.Agent : http.Agent;
    class TunnelAgent extends Base {
      override createConnection(
        options: http.ClientRequestArgs,
        callback?: (err: Error | null, stream: net.Socket) => void,
      ): undefined {
        const done = callback as Callback;
        const host = String(options.host ?? options.hostname ?? "localhost");
        const port = Number(options.port ?? (secure ? 443 : 80));
        const servername = (options as tls.ConnectionOptions).servername;
        if (own(host, port)) {
          done(null, direct(host, port, secure, servername));
          return undefined;
        }
        connectThrough(proxy, host, port, secure, servername).then(
          (socket) => done(null, socket),
          (err: Error) => done(err),
        );
        return undefined;
      }
    }
    return new TunnelAgent({ keepAlive: true });
  };
  http.globalAgent = agentFor(false);
  https.globalAgent = agentFor(true) as unknown as https.Agent;
}
