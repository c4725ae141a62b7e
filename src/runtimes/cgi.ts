/** The CGI/1.1 (RFC 3875) halves of the WAGI ABI: request → env vars, stdout → response. */
import type { IncomingMessage } from "node:http";

/** CGI/1.1 meta-variables (RFC 3875) plus HTTP_* for the request headers. */
export function cgiEnv(req: IncomingMessage, bodyLength: number, serverPort: number): Record<string, string> {
  const url = new URL(req.url ?? "/", "http://placeholder");
  const env: Record<string, string> = {
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    SERVER_SOFTWARE: "tabbify-wasm",
    SERVER_NAME: "127.0.0.1",
    SERVER_PORT: String(serverPort),
    REQUEST_METHOD: req.method ?? "GET",
    SCRIPT_NAME: "",
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REQUEST_URI: req.url ?? "/",
    REMOTE_ADDR: req.socket.remoteAddress ?? "",
    REMOTE_PORT: String(req.socket.remotePort ?? ""),
    CONTENT_LENGTH: String(bodyLength),
  };
  if (req.headers["content-type"]) env.CONTENT_TYPE = req.headers["content-type"];
  for (const [name, value] of Object.entries(req.headers)) {
    if (name === "content-type" || name === "content-length" || value === undefined) continue;
    env[`HTTP_${name.toUpperCase().replaceAll("-", "_")}`] = Array.isArray(value) ? value.join(", ") : value;
  }
  return env;
}

export interface CgiResponse {
  status: number;
  headers: [string, string][];
  body: Buffer;
}

/** Splits a CGI response document: header lines, a blank line, the body. */
export function parseCgiResponse(output: Buffer): CgiResponse | undefined {
  const crlf = output.indexOf("\r\n\r\n");
  const lf = output.indexOf("\n\n");
  let headerEnd: number;
  let bodyStart: number;
  if (lf >= 0 && (crlf < 0 || lf < crlf)) {
    headerEnd = lf;
    bodyStart = lf + 2;
  } else if (crlf >= 0) {
    headerEnd = crlf;
    bodyStart = crlf + 4;
  } else {
    return undefined;
  }
  let status = 200;
  let hasStatus = false;
  const headers: [string, string][] = [];
  for (const line of output.subarray(0, headerEnd).toString("latin1").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return undefined;
    if (name.toLowerCase() === "status") {
      const code = Number(value.split(" ")[0]);
      if (!Number.isInteger(code) || code < 100 || code > 599) return undefined;
      status = code;
      hasStatus = true;
    } else {
      headers.push([name, value]);
    }
  }
  // RFC 3875 §6.2.3: a Location without a Status is a redirect.
  if (!hasStatus && headers.some(([n]) => n.toLowerCase() === "location")) status = 302;
  return { status, headers, body: output.subarray(bodyStart) };
}
