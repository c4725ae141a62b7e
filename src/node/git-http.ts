import { spawn } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";

/**
 * Smart-HTTP git through git's own `git http-backend`, run as CGI: the request body streams into
 * it and its answer streams back (a pack is never held whole). `env` adds what the caller decides
 * (REMOTE_USER, the push hook's callback); nothing from the request reaches it but the CGI fields.
 */
export interface GitCgiRequest {
  req: IncomingMessage;
  /** The request body; `req` itself unless a framework already took it over. */
  body?: Readable;
  res: ServerResponse;
  projectRoot: string;
  /** `/<repo>.git/info/refs` etc., relative to projectRoot. */
  pathInfo: string;
  query: string;
  env?: NodeJS.ProcessEnv;
}

export function runGitHttpBackend(cgi: GitCgiRequest): Promise<void> {
  const { req, res } = cgi;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    GIT_PROJECT_ROOT: cgi.projectRoot,
    GIT_HTTP_EXPORT_ALL: "1",
    PATH_INFO: cgi.pathInfo,
    REQUEST_METHOD: req.method ?? "GET",
    QUERY_STRING: cgi.query,
    CONTENT_TYPE: req.headers["content-type"] ?? "",
    REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    ...cgi.env,
  };
  if (req.headers["content-length"]) env["CONTENT_LENGTH"] = req.headers["content-length"];
  // git sends large fetch negotiations gzip-compressed; http-backend inflates when told.
  if (req.headers["content-encoding"]) env["HTTP_CONTENT_ENCODING"] = req.headers["content-encoding"];
  // Protocol v2 is requested with the Git-Protocol header; http-backend reads it from here.
  const gitProtocol = req.headers["git-protocol"];
  if (typeof gitProtocol === "string") env["GIT_PROTOCOL"] = gitProtocol;

  return new Promise<void>((resolve) => {
    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
    (cgi.body ?? req).pipe(child.stdin);
    child.stdin.on("error", () => {});
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    let head = Buffer.alloc(0);
    let headersSent = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      let end = head.indexOf("\r\n\r\n");
      let sepLength = 4;
      if (end < 0) {
        end = head.indexOf("\n\n");
        sepLength = 2;
      }
      if (end < 0) return;
      const lines = head.subarray(0, end).toString("latin1").split(/\r?\n/);
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        if (colon < 0) continue;
        const key = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (key.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else headers[key] = value;
      }
      res.writeHead(status, headers);
      headersSent = true;
      const rest = head.subarray(end + sepLength);
      if (rest.length > 0) res.write(rest);
    });
    child.on("close", (code) => {
      if (!headersSent) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`git http-backend exited ${code}\n`);
      } else {
        res.end();
      }
      resolve();
    });
  });
}
