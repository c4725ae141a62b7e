import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

/**
 * A repository URL this platform will clone: http(s) only. A file:// or ext:: remote would let a
 * caller read or run things on the host that clones it. Returns the URL, or why it is refused
 * (a message naming `repo_url`, the field both APIs take).
 */
export function parseHttpRepoUrl(raw: string): { url: URL } | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: "repo_url is not a URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { problem: `repo_url must be an http(s) URL, not ${url.protocol}` };
  }
  return { url };
}

/**
 * Where a clone may go. Without `allowPrivate`, a repo_url whose host is (or resolves to) a
 * loopback, link-local or unspecified address, an address of the platform's own ranges
 * (peers `fd5a:1f00::/32`, apps `fd5a:1f02::/32`, their loopback twins in 127/8), or an address
 * the platform itself listens on is refused: otherwise anyone who may deploy could make the
 * builder fetch `http://169.254.169.254/…` (cloud metadata) or poke the supervisor, registry
 * or auth from inside. `tabbify up` turns `allowPrivate` on: there every role and the test git
 * servers live on loopback.
 */
export interface RepoUrlPolicy {
  allowPrivate: boolean;
  /**
   * Hosts the platform's roles listen on (`127.0.0.1`, `[::]`, `node.internal`): each one's
   * addresses are refused, and an unspecified one (`0.0.0.0`, `::`) stands for every address of
   * this machine's interfaces. Read at each check, so a roster that changes is followed.
   */
  platformHosts?: () => readonly string[];
  /** Name resolution; default the system resolver (`getaddrinfo`, as git's curl does). */
  resolve?: (host: string) => Promise<string[]>;
}

export type RepoUrlCheck = { url: URL; addresses: string[] } | { problem: string };

/** The system resolver, every address of a name. */
async function systemResolve(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

/**
 * Checks a repo_url against the policy: the scheme (as {@link parseHttpRepoUrl}), then every
 * address its host names. IPv4 literals in decimal, octal or hex (`http://2130706433/`,
 * `http://0x7f.1/`) are normalised by the URL parser to the dotted address curl would reach, and
 * names are resolved and each address checked, so a name pointing at 127.0.0.1 is refused as
 * the literal is. Returns the addresses checked, so the clone can be pinned to them (no second
 * lookup an attacker's DNS could answer differently).
 */
export async function checkRepoUrl(raw: string, policy: RepoUrlPolicy): Promise<RepoUrlCheck> {
  const parsed = parseHttpRepoUrl(raw);
  if ("problem" in parsed) return parsed;
  const { url } = parsed;
  const host = bareHost(url.hostname);
  if (host === "") return { problem: "repo_url has no host" };
  // With private addresses allowed there is nothing to look for in the answers: a name is left
  // to git's own lookup (and a node without DNS can still take a deploy it will clone later).
  if (policy.allowPrivate) return { url, addresses: isIP(host) !== 0 ? [host] : [] };
  let addresses: string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = await (policy.resolve ?? systemResolve)(host);
    } catch {
      return { problem: `repo_url host ${host} does not resolve` };
    }
    if (addresses.length === 0) return { problem: `repo_url host ${host} does not resolve` };
  }
  const platform = await platformAddresses(policy);
  for (const address of addresses) {
    const why =
      privateReason(address) ?? (platform.has(canonicalIp(address)) ? "the platform's own" : undefined);
    if (why !== undefined) {
      const named = address === host ? host : `${host} (${address})`;
      return {
        problem: `repo_url points at ${named}, a ${why} address: refused unless the node and builder run with --allow-private-repos (TABBIFY_ALLOW_PRIVATE_REPOS=1)`,
      };
    }
  }
  return { url, addresses };
}

function bareHost(hostname: string): string {
  return hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
}

async function platformAddresses(policy: RepoUrlPolicy): Promise<Set<string>> {
  const out = new Set<string>();
  for (const raw of policy.platformHosts?.() ?? []) {
    const host = bareHost(hostOf(raw));
    if (host === "") continue;
    if (host === "0.0.0.0" || host === "::") {
      for (const list of Object.values(networkInterfaces())) {
        for (const nic of list ?? []) out.add(canonicalIp(nic.address.split("%")[0]!));
      }
      continue;
    }
    if (isIP(host) !== 0) out.add(canonicalIp(host));
    else {
      const resolved = await (policy.resolve ?? systemResolve)(host).catch(() => [] as string[]);
      for (const a of resolved) out.add(canonicalIp(a));
    }
  }
  return out;
}

/** `host`, `host:port`, `[v6]:port` or a URL → the host part. */
function hostOf(raw: string): string {
  if (raw.includes("://")) {
    try {
      return new URL(raw).hostname;
    } catch {
      return "";
    }
  }
  if (raw.startsWith("[")) return raw.slice(0, raw.indexOf("]") + 1);
  if (isIP(raw) === 6) return raw;
  return raw.replace(/:\d+$/, "");
}

/** Why an address is never a repository host, or undefined when it may be. */
export function privateReason(address: string): string | undefined {
  const ip = address.split("%")[0]!;
  const family = isIP(ip);
  if (family === 4) return ipv4Reason(ipv4Bytes(ip));
  if (family !== 6) return "malformed";
  const words = ipv6Words(ip);
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms reach the IPv4 address.
  const high = words.slice(0, 5).every((w) => w === 0);
  if (high && (words[5] === 0xffff || (words[5] === 0 && (words[6]! > 0 || words[7]! > 1)))) {
    return ipv4Reason([words[6]! >> 8, words[6]! & 0xff, words[7]! >> 8, words[7]! & 0xff]);
  }
  if (words.every((w) => w === 0)) return "unspecified";
  if (words.slice(0, 7).every((w) => w === 0) && words[7] === 1) return "loopback";
  if ((words[0]! & 0xffc0) === 0xfe80) return "link-local";
  if (words[0] === 0xfd5a && (words[1] === 0x1f00 || words[1] === 0x1f02)) return "platform mesh";
  return undefined;
}

function ipv4Reason(b: number[]): string | undefined {
  if (b[0] === 0) return "unspecified";
  if (b[0] === 127) return "loopback";
  if (b[0] === 169 && b[1] === 254) return "link-local";
  if (b.every((x) => x === 255)) return "broadcast";
  return undefined;
}

function ipv4Bytes(ip: string): number[] {
  return ip.split(".").map(Number);
}

/** The eight 16-bit words of an IPv6 address; the URL parser first rewrites a dotted IPv4 tail. */
function ipv6Words(ip: string): number[] {
  const hex = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head = "", rest = ""] = hex.includes("::") ? hex.split("::") : [hex, ""];
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((p) => Number.parseInt(p, 16)));
  const left = parse(head);
  const right = parse(rest);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** One spelling per address, so a platform address matches however it was written. */
function canonicalIp(address: string): string {
  const ip = address.split("%")[0]!;
  if (isIP(ip) === 4) return ip;
  if (isIP(ip) !== 6) return ip;
  const w = ipv6Words(ip);
  if (w.slice(0, 5).every((x) => x === 0) && w[5] === 0xffff) {
    return `${w[6]! >> 8}.${w[6]! & 0xff}.${w[7]! >> 8}.${w[7]! & 0xff}`;
  }
  return w.map((x) => x.toString(16)).join(":");
}
