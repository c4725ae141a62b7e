/**
 * Hop-by-hop header handling shared by the node's and the runner's proxies. Both work on
 * `rawHeaders` (a flat name/value list) rather than `req.headers`: node:http builds that object
 * lazily on first access, and building it costs more per request than the rest of a hop.
 */

/**
 * Headers that describe one connection rather than the message (RFC 9110 §7.6.1), lowercase.
 * A proxy never forwards them either way; `proxy-connection` is the legacy spelling clients
 * still send.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
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

/**
 * The header names a Connection value lists (lowercase), which are hop-by-hop for this message
 * too; undefined when it lists none beyond the ones always dropped, so the common case allocates
 * nothing. `close` is a connection option, not a header name.
 */
export function connectionListed(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  const lower = value.toLowerCase();
  // Nearly every message carries one of these alone; they name no header, so skip the split.
  if (lower === "keep-alive" || lower === "close") return undefined;
  let names: Set<string> | undefined;
  for (const raw of lower.split(",")) {
    const name = raw.trim();
    if (name === "" || name === "close" || HOP_BY_HOP.has(name)) continue;
    names ??= new Set();
    names.add(name);
  }
  return names;
}

/** Repeated headers are joined the way node:http joins them in `req.headers`. */
export function joinHeader(prior: string | undefined, value: string): string {
  return prior === undefined ? value : `${prior}, ${value}`;
}

/** A flat name/value list without the headers `names` (lowercase) lists. */
export function withoutNamed(headers: readonly string[], names: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!names.has(headers[i]!.toLowerCase())) kept.push(headers[i]!, headers[i + 1]!);
  }
  return kept;
}

export interface EndToEnd {
  /** The end-to-end headers as a flat name/value list, names spelled as received. */
  headers: string[];
  /**
   * Whether the message declares a body (RFC 9112 §6.3: a Content-Length other than 0, or a
   * Transfer-Encoding). Meaningful for requests, whose framing depends on nothing else.
   */
  hasBody: boolean;
  /** The Upgrade value, for relaying an upgrade request after the header itself is dropped. */
  upgrade: string | undefined;
}

/**
 * `rawHeaders` without hop-by-hop headers, including any the Connection header names. One pass;
 * a second only when Connection names extra headers, since it may come after them.
 */
export function endToEnd(raw: readonly string[]): EndToEnd {
  let headers: string[] = [];
  let connection: string | undefined;
  let upgrade: string | undefined;
  let hasBody = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (!HOP_BY_HOP.has(lower)) {
      if (lower === "content-length" && value !== "0") hasBody = true;
      headers.push(name, value);
      continue;
    }
    if (lower === "connection") connection = joinHeader(connection, value);
    else if (lower === "transfer-encoding") hasBody = true;
    else if (lower === "upgrade") upgrade ??= value;
  }
  const listed = connectionListed(connection);
  if (listed) headers = withoutNamed(headers, listed);
  return { headers, hasBody, upgrade };
}
