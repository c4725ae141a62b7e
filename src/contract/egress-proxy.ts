import dns from "node:dns/promises";
import http from "node:http";
import net from "node:net";

/**
 * The egress proxy of a handler workload: an HTTP proxy (absolute-form requests for `http:`,
 * CONNECT tunnels for anything else) that lets through exactly the hosts of the contract and
 * refuses the rest with 403 and a line in the app's log. The runner starts one per workload and
 * gives the workload only `HTTP_PROXY`/`HTTPS_PROXY`; `deploy --local` runs one in-process. It
 * imports nothing but node: builtins, so the single executable can bundle it.
 *
 * What it checks, and why:
 * - the authority is the request's own (CONNECT's target, or the absolute URL's host): a `Host`
 *   header never decides where a request goes, and is rewritten to the authority;
 * - an entry `name` allows ports 80 and 443; `name:port` that port only;
 * - the name is resolved here, once, and the connection goes to the address checked. An address
 *   on loopback, a private range (RFC 1918, ULA), link-local (cloud metadata), unspecified or
 *   multicast is refused
 *   unless the contract names that very IP literal: a public name that resolves to the node's own
 *   services (DNS rebinding) does not get through. Link-local is refused even when named.
 */

export interface EgressProxyOptions {
  /** Contract egress entries: `host` or `host:port` (IPv6 literals in brackets). */
  allow: readonly string[];
  /** One line per refusal (and nothing else); the runner writes it to the app's log. */
  log: (line: string) => void;
  /** Where to listen. Default 127.0.0.1, a free port. */
  host?: string;
  port?: number;
  /** The resolver; tests replace it to point a name at an internal address. */
  lookup?: (name: string) => Promise<{ address: string; family: number }[]>;
}

export interface EgressProxy {
  readonly url: string;
  readonly port: number;
  /** Refusals so far (the log has one line for each). */
  readonly refused: number;
  close(): Promise<void>;
}

interface Target {
  host: string;
  port: number;
}

const CONNECT_TIMEOUT_MS = 15_000;

/** `host`, `host:port`, `[v6]`, `[v6]:port` → lowercase host without brackets, and the port. */
export function parseAuthority(authority: string, defaultPort?: number): Target | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return undefined;
  const host = m[1]!.replace(/^\[|\]$/g, "").toLowerCase();
  const port = m[2] !== undefined ? Number(m[2]) : defaultPort;
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  if (host.includes(":") && net.isIPv6(host) === false) return undefined;
  return { host: host.replace(/\.$/, ""), port };
}

/** Whether a contract entry allows `host:port`. */
export function allowedBy(allow: readonly string[], target: Target): boolean {
  for (const entry of allow) {
    const parsed = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry.toLowerCase());
    if (!parsed) continue;
    const host = parsed[1]!.replace(/^\[|\]$/g, "").replace(/\.$/, "");
    if (host !== target.host) continue;
    if (
      parsed[2] !== undefined ? Number(parsed[2]) === target.port : target.port === 80 || target.port === 443
    )
      return true;
  }
  return false;
}

function v4Number(address: string): number {
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

/** Addresses a workload never reaches by a name: the host's own, link-local and the like. */
export function internalAddress(address: string): "link-local" | "internal" | undefined {
  let a = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) a = mapped[1]!;
  if (net.isIPv4(a)) {
    const n = v4Number(a);
    const inRange = (base: string, bits: number) =>
      bits === 0 || n >>> (32 - bits) === v4Number(base) >>> (32 - bits);
    if (inRange("169.254.0.0", 16)) return "link-local";
    if (
      inRange("127.0.0.0", 8) ||
      inRange("0.0.0.0", 8) ||
      inRange("10.0.0.0", 8) ||
      inRange("172.16.0.0", 12) ||
      inRange("192.168.0.0", 16) ||
      inRange("224.0.0.0", 4) ||
      inRange("240.0.0.0", 4) ||
      inRange("100.100.100.200", 32)
    )
      return "internal";
    return undefined;
  }
  if (net.isIPv6(a)) {
    if (/^fe[89ab]/.test(a)) return "link-local";
    if (a === "::1" || a === "::" || /^f[cdf]/.test(a)) return "internal";
  }
  return undefined;
}

export async function startEgressProxy(opts: EgressProxyOptions): Promise<EgressProxy> {
  const lookup = opts.lookup ?? (async (name: string) => dns.lookup(name, { all: true, verbatim: true }));
  const allowText = opts.allow.join(", ") || "none";
  let refused = 0;
  const sockets = new Set<net.Socket>();

  const refuse = (what: string, why: string): string => {
    refused++;
    const line = `tabbify egress: refused ${what}: ${why}`;
    opts.log(line);
    return line;
  };

  /** The address to dial for an allowed target, or the reason it is refused. */
  const resolveTarget = async (target: Target): Promise<{ address: string } | { refusal: string }> => {
    const what = `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
    if (!allowedBy(opts.allow, target)) {
      return { refusal: refuse(what, `not in this handler's contract (allowed: ${allowText})`) };
    }
    const literal = net.isIP(target.host) !== 0;
    let addresses: string[];
    try {
      addresses = literal ? [target.host] : (await lookup(target.host)).map((a) => a.address);
    } catch (err) {
      return {
        refusal: refuse(
          what,
          `cannot resolve ${target.host} (${(err as { code?: string }).code ?? "error"})`,
        ),
      };
    }
    for (const address of addresses) {
      const kind = internalAddress(address);
      if (kind === undefined || (kind === "internal" && literal)) return { address };
    }
    return {
      refusal: refuse(
        what,
        literal
          ? "a link-local address (cloud metadata) is never reachable"
          : `${target.host} resolves only to internal addresses (${addresses.join(", ")})`,
      ),
    };
  };

  const dial = (address: string, port: number): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: address, port });
      const timer = setTimeout(() => socket.destroy(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });

  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };

  const server = http.createServer(async (req, res) => {
    const fail = (status: number, text: string) => {
      if (res.headersSent) return res.destroy();
      res.writeHead(status, {
        "content-type": "text/plain",
        "x-tabbify-egress": "refused",
        connection: "close",
      });
      res.end(`${text}\n`);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      return fail(400, "this is an egress proxy: send absolute-form requests (http://host/path) or CONNECT");
    }
    if (url.protocol !== "http:" || url.username !== "" || url.password !== "") {
      return fail(
        400,
        `the egress proxy forwards plain http:// URLs without credentials; use CONNECT for ${url.protocol}`,
      );
    }
    const target = parseAuthority(url.host, 80);
    if (!target) return fail(400, "the request's host is not a host name or IP address");
    const decided = await resolveTarget(target);
    if ("refusal" in decided) return fail(403, decided.refusal);
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (/^(host|proxy-.*|connection|keep-alive|te|trailer|upgrade)$/i.test(name)) continue;
      headers[name] = value;
    }
    headers.host = url.host;
    const upstream = http.request({
      host: decided.address,
      port: target.port,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      timeout: CONNECT_TIMEOUT_MS,
    });
    upstream.once("timeout", () => upstream.destroy(new Error("timed out")));
    upstream.once("response", (answer) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(answer.headers)) {
        if (/^(connection|keep-alive|proxy-.*|transfer-encoding)$/i.test(name)) continue;
        out[name] = value;
      }
      res.writeHead(answer.statusCode ?? 502, out);
      answer.pipe(res);
    });
    upstream.once("error", (err) => fail(502, `egress to ${url.host} failed: ${err.message}`));
    req.pipe(upstream);
  });

  server.on("connect", async (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    track(client);
    client.on("error", () => {});
    const answer = (status: string, text: string) =>
      client.end(
        `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nx-tabbify-egress: refused\r\ncontent-length: ${Buffer.byteLength(text) + 1}\r\nconnection: close\r\n\r\n${text}\n`,
      );
    const target = parseAuthority(req.url ?? "");
    if (!target) return answer("400 Bad Request", "CONNECT needs host:port");
    const decided = await resolveTarget(target);
    if ("refusal" in decided) return answer("403 Forbidden", decided.refusal);
    let upstream: net.Socket;
    try {
      upstream = await dial(decided.address, target.port);
    } catch (err) {
      return answer("502 Bad Gateway", `egress to ${req.url} failed: ${(err as Error).message}`);
    }
    track(upstream);
    if (client.destroyed) return upstream.destroy();
    // A tunnel relays whatever arrives at once: no Nagle delay on either leg.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) upstream.write(head);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on("connection", track);
  server.on("clientError", (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  const host = opts.host ?? "127.0.0.1";
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    get refused() {
      return refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
