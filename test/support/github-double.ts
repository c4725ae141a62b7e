import { spawn } from "node:child_process";
import { type KeyObject, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { jwtVerify } from "jose";
import { runGitHttpBackend } from "../../src/node/git-http.js";
import { git } from "./git-repo.js";

/**
 * A local stand-in for GitHub, for the calls the deploy pipeline makes, in GitHub's own wire
 * format (paths, headers, status codes, JSON bodies):
 *
 *   POST /app/installations/{id}/access_tokens   app JWT (RS256, verified with the App's public
 *                                                key) → 201 {token, expires_at, …}
 *   GET  /repos/{owner}/{repo}/installation      app JWT → 200 {id, account, app_id, …} of the
 *                                                installation covering the repo, else 404
 *   GET  /repos/{owner}/{repo}/contents/{path}?ref=   base64 JSON read from the bare repo with
 *                                                `git show <ref>:<path>`; raw bytes for
 *                                                `Accept: application/vnd.github.raw+json`
 *   GET|POST /{owner}/{repo}.git/…               smart HTTP through `git http-backend` (CGI)
 *
 * Private repositories need an installation token whose installation covers them: as a Bearer
 * (or `token`) header on the API, as the Basic password on the clone. As on GitHub, an invalid
 * token is a 401 and a private repository asked for without one is a 404 on the API (GitHub does
 * not admit it exists) and a 401 Basic challenge on git.
 */

export interface GithubDoubleOptions {
  /** Directory holding `<owner>/<repo>.git` bare repositories. */
  projectRoot: string;
  appId: string;
  /** The App's public key: app JWTs are verified with it. */
  appPublicKey: KeyObject;
  /** Installation id → the `owner/repo` names it may access. */
  installations: Record<number, string[]>;
  /** `owner/repo` names that need a token; every other repository is public. */
  privateRepos?: string[];
  /** Token lifetime. Default 1 h, like GitHub. */
  tokenTtlMs?: number;
}

export interface GithubDoubleRequest {
  method: string;
  path: string;
  /** Which credential came with it (never the value). */
  auth: "none" | "app-jwt" | "installation-token" | "invalid";
  status: number;
}

export interface GithubDouble {
  /** `http://127.0.0.1:<port>`: the API base and the clone host alike. */
  url: string;
  apiUrl: string;
  cloneUrl(fullName: string): string;
  /** Every request served, in order. */
  requests: GithubDoubleRequest[];
  /** Tokens issued so far (tests check they never leak into records or logs). */
  issuedTokens(): string[];
  close(): Promise<void>;
}

const DOCS = "https://docs.github.com/rest";

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "x-github-media-type": "github.v3; format=json",
  });
  res.end(text);
}

function notFound(res: ServerResponse): void {
  sendJson(res, 404, { message: "Not Found", documentation_url: DOCS, status: "404" });
}

function badCredentials(res: ServerResponse): void {
  sendJson(res, 401, { message: "Bad credentials", documentation_url: DOCS, status: "401" });
}

/** GitHub wraps base64 content at 60 characters with `\n`. */
function wrapBase64(bytes: Buffer): string {
  return (bytes.toString("base64").match(/.{1,60}/g) ?? []).join("\n").concat(bytes.length > 0 ? "\n" : "");
}

export async function gitObjectType(bareDir: string, spec: string): Promise<string | undefined> {
  try {
    return (await git(["--git-dir", bareDir, "cat-file", "-t", spec])).trim();
  } catch {
    return undefined;
  }
}

export function readBlob(bareDir: string, spec: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["--git-dir", bareDir, "show", spec], { stdio: ["ignore", "pipe", "ignore"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`git show ${code}`)),
    );
  });
}

/**
 * Smart HTTP: the request goes to `git http-backend` as CGI over `projectRoot`; both bodies
 * stream. Only fetch/clone: pushing is not a forge double's role.
 */
export function gitHttpBackend(
  req: IncomingMessage,
  res: ServerResponse,
  projectRoot: string,
  pathInfo: string,
  query: string,
): Promise<void> {
  if (pathInfo.endsWith("/git-receive-pack") || query.includes("service=git-receive-pack")) {
    res.writeHead(403, { "content-type": "text/plain" });
    res.end("push is not served by this double\n");
    return Promise.resolve();
  }
  return runGitHttpBackend({ req, res, projectRoot, pathInfo, query });
}

export async function startGithubDouble(opts: GithubDoubleOptions): Promise<GithubDouble> {
  const tokens = new Map<string, { installationId: number; expiresAt: number }>();
  const privateRepos = new Set(opts.privateRepos ?? []);
  const requests: GithubDoubleRequest[] = [];
  const ttl = opts.tokenTtlMs ?? 3600_000;
  let base = "";

  /** The installation token in a request, when valid; "invalid" for a bad one; undefined for none. */
  const tokenFrom = (req: IncomingMessage): { installationId: number } | "invalid" | undefined => {
    const header = req.headers.authorization;
    if (!header) return undefined;
    let presented: string | undefined;
    const scheme = header.split(" ", 1)[0]!.toLowerCase();
    const value = header.slice(scheme.length + 1).trim();
    if (scheme === "bearer" || scheme === "token") presented = value;
    else if (scheme === "basic") {
      const decoded = Buffer.from(value, "base64").toString("utf8");
      presented = decoded.slice(decoded.indexOf(":") + 1);
    }
    const entry = presented === undefined ? undefined : tokens.get(presented);
    if (!entry || entry.expiresAt < Date.now()) return "invalid";
    return { installationId: entry.installationId };
  };

  const mayRead = (fullName: string, auth: ReturnType<typeof tokenFrom>): "ok" | "invalid" | "hidden" => {
    if (auth === "invalid") return "invalid";
    if (!privateRepos.has(fullName)) return "ok";
    if (auth === undefined) return "hidden";
    return (opts.installations[auth.installationId] ?? []).includes(fullName) ? "ok" : "hidden";
  };

  const authLabel = (auth: ReturnType<typeof tokenFrom>): GithubDoubleRequest["auth"] =>
    auth === undefined ? "none" : auth === "invalid" ? "invalid" : "installation-token";

  /** Verifies the App's JWT the way GitHub does; on failure the 401 is sent and false returned. */
  async function appAuthenticated(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const header = req.headers.authorization ?? "";
    if (!header.startsWith("Bearer ")) {
      sendJson(res, 401, {
        message: "A JSON web token could not be decoded",
        documentation_url: DOCS,
        status: "401",
      });
      return false;
    }
    try {
      const { payload } = await jwtVerify(header.slice("Bearer ".length), opts.appPublicKey, {
        algorithms: ["RS256"],
        issuer: opts.appId,
      });
      // GitHub's own rules: iat in the past (60 s of drift allowed), exp at most 10 min after iat.
      const now = Math.floor(Date.now() / 1000);
      if (typeof payload.iat !== "number" || typeof payload.exp !== "number")
        throw new Error("iat/exp missing");
      if (payload.iat > now + 60) throw new Error("iat in the future");
      if (payload.exp - payload.iat > 600) throw new Error("exp too far in the future");
    } catch {
      sendJson(res, 401, {
        message:
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        documentation_url: DOCS,
        status: "401",
      });
      return false;
    }
    return true;
  }

  async function accessTokens(
    req: IncomingMessage,
    res: ServerResponse,
    installationId: number,
  ): Promise<GithubDoubleRequest["auth"]> {
    if (!(await appAuthenticated(req, res))) return req.headers.authorization ? "invalid" : "none";
    if (!opts.installations[installationId]) {
      notFound(res);
      return "app-jwt";
    }
    const token = `ghs_${randomBytes(18).toString("base64url")}`;
    const expiresAt = Date.now() + ttl;
    tokens.set(token, { installationId, expiresAt });
    sendJson(res, 201, {
      token,
      expires_at: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
      permissions: { contents: "read", metadata: "read" },
      repository_selection: "selected",
    });
    return "app-jwt";
  }

  /** GitHub's "Get a repository installation for the authenticated app". */
  async function repoInstallation(
    req: IncomingMessage,
    res: ServerResponse,
    fullName: string,
  ): Promise<GithubDoubleRequest["auth"]> {
    if (!(await appAuthenticated(req, res))) return req.headers.authorization ? "invalid" : "none";
    const match = Object.entries(opts.installations).find(([, repos]) =>
      repos.some((r) => r.toLowerCase() === fullName.toLowerCase()),
    );
    if (!match) {
      sendJson(res, 404, {
        message: "Not Found",
        documentation_url: `${DOCS}/apps/apps#get-a-repository-installation-for-the-authenticated-app`,
        status: "404",
      });
      return "app-jwt";
    }
    const id = Number(match[0]);
    const owner = fullName.split("/")[0]!;
    sendJson(res, 200, {
      id,
      client_id: `Iv1.${opts.appId}`,
      account: { login: owner, id: 1, type: "User", site_admin: false },
      repository_selection: "selected",
      access_tokens_url: `${base}/app/installations/${id}/access_tokens`,
      repositories_url: `${base}/installation/repositories`,
      html_url: `${base}/settings/installations/${id}`,
      app_id: Number(opts.appId),
      app_slug: "tabbify-test",
      target_id: 1,
      target_type: "User",
      permissions: { contents: "read", metadata: "read" },
      events: ["push"],
      created_at: "2024-01-01T00:00:00Z",
      updated_at: "2024-01-01T00:00:00Z",
      single_file_name: null,
      has_multiple_single_files: false,
      single_file_paths: [],
      suspended_by: null,
      suspended_at: null,
    });
    return "app-jwt";
  }

  async function contents(
    req: IncomingMessage,
    res: ServerResponse,
    fullName: string,
    path: string,
    ref: string,
  ): Promise<GithubDoubleRequest["auth"]> {
    const auth = tokenFrom(req);
    const access = mayRead(fullName, auth);
    if (access === "invalid") {
      badCredentials(res);
      return "invalid";
    }
    const bareDir = `${opts.projectRoot}/${fullName}.git`;
    if (access === "hidden" || (await gitObjectType(bareDir, "HEAD")) === undefined) {
      notFound(res);
      return authLabel(auth);
    }
    const spec = `${ref || "HEAD"}:${path}`;
    const type = await gitObjectType(bareDir, spec);
    if (type === undefined) {
      notFound(res);
      return authLabel(auth);
    }
    const [owner, repo] = fullName.split("/") as [string, string];
    const htmlBase = `${base}/${fullName}`;
    if (type === "tree") {
      const listing = await git(["--git-dir", bareDir, "ls-tree", "-l", spec]);
      const entries = listing
        .split("\n")
        .filter((l) => l !== "")
        .map((line) => {
          const [meta, name] = line.split("\t") as [string, string];
          const [, kind, sha, size] = meta.split(/\s+/) as [string, string, string, string];
          const entryPath = path === "" ? name : `${path}/${name}`;
          return {
            type: kind === "tree" ? "dir" : "file",
            name,
            path: entryPath,
            sha,
            size: kind === "tree" ? 0 : Number(size),
            url: `${base}/repos/${owner}/${repo}/contents/${entryPath}?ref=${ref}`,
          };
        });
      sendJson(res, 200, entries);
      return authLabel(auth);
    }
    const bytes = await readBlob(bareDir, spec);
    const accept = req.headers.accept ?? "";
    if (accept.includes("application/vnd.github.raw")) {
      res.writeHead(200, { "content-type": "application/vnd.github.raw", "content-length": bytes.length });
      res.end(bytes);
      return authLabel(auth);
    }
    const blobSha = (await git(["--git-dir", bareDir, "rev-parse", spec])).trim();
    const name = path.split("/").pop() ?? path;
    const url = `${base}/repos/${owner}/${repo}/contents/${path}?ref=${ref}`;
    sendJson(res, 200, {
      type: "file",
      encoding: "base64",
      size: bytes.length,
      name,
      path,
      content: wrapBase64(bytes),
      sha: blobSha,
      url,
      git_url: `${base}/repos/${owner}/${repo}/git/blobs/${blobSha}`,
      html_url: `${htmlBase}/blob/${ref}/${path}`,
      download_url: `${base}/raw/${fullName}/${ref}/${path}`,
      _links: {
        self: url,
        git: `${base}/repos/${owner}/${repo}/git/blobs/${blobSha}`,
        html: `${htmlBase}/blob/${ref}/${path}`,
      },
    });
    return authLabel(auth);
  }

  /** Smart HTTP for a reader the repository admits. */
  function smartHttp(
    req: IncomingMessage,
    res: ServerResponse,
    fullName: string,
    pathInfo: string,
    query: string,
  ): Promise<GithubDoubleRequest["auth"]> {
    const auth = tokenFrom(req);
    const access = mayRead(fullName, auth);
    if (access !== "ok") {
      res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"', "content-type": "text/plain" });
      res.end(access === "invalid" ? "Invalid username or token.\n" : "Authentication required.\n");
      return Promise.resolve(authLabel(auth));
    }
    return gitHttpBackend(req, res, opts.projectRoot, pathInfo, query).then(() => authLabel(auth));
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://double.invalid");
    const method = req.method ?? "GET";
    const record = (auth: GithubDoubleRequest["auth"]) =>
      requests.push({ method, path: url.pathname, auth, status: res.statusCode });
    const handle = async (): Promise<GithubDoubleRequest["auth"]> => {
      let m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(url.pathname);
      if (m && method === "POST") return accessTokens(req, res, Number(m[1]));
      m = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(url.pathname);
      if (m && method === "GET") return repoInstallation(req, res, `${m[1]}/${m[2]}`);
      m = /^\/repos\/([^/]+)\/([^/]+)\/contents(?:\/(.*))?$/.exec(url.pathname);
      if (m && method === "GET") {
        const path = decodeURIComponent(m[3] ?? "").replace(/\/+$/, "");
        return contents(req, res, `${m[1]}/${m[2]}`, path, url.searchParams.get("ref") ?? "");
      }
      m = /^\/([^/]+)\/([^/]+?)\.git(\/.*)$/.exec(url.pathname);
      if (m && (method === "GET" || method === "POST")) {
        return smartHttp(req, res, `${m[1]}/${m[2]}`, url.pathname, url.search.replace(/^\?/, ""));
      }
      notFound(res);
      return "none";
    };
    handle().then(record, (err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: String(err) });
      else res.destroy();
      record("none");
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    apiUrl: base,
    cloneUrl: (fullName) => `${base}/${fullName}.git`,
    requests,
    issuedTokens: () => [...tokens.keys()],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
