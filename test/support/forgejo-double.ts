import { createHmac, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { git } from "./git-repo.js";
import { gitHttpBackend, gitObjectType, readBlob } from "./github-double.js";

/**
 * A local stand-in for Forgejo, for what the deploy pipeline asks of it, in Forgejo's own wire
 * format (its `/api/v1` paths, `Authorization: token <t>`, its JSON bodies and error shapes):
 *
 *   GET  /api/v1/repos/{owner}/{repo}/contents/{path}?ref=   ContentsResponse with the blob as
 *                                                base64 (unwrapped, as Go encodes it), read from
 *                                                the bare repo with `git show <ref>:<path>`
 *   GET|POST /{owner}/{repo}.git/…               smart HTTP through `git http-backend` (CGI)
 *
 * Forgejo has no App installations: private repositories are read with a user's access token,
 * `token <t>` (or `Bearer <t>`) on the API and the Basic password (any user name) on git. As on
 * Forgejo, an unknown token is a 401 and a private repository asked for without one is a 404 on
 * the API and a 401 Basic challenge on git.
 *
 * {@link forgejoPushPayload} and {@link forgejoDeliveryHeaders} build what Forgejo's webhook
 * sender posts for a push.
 */

export interface ForgejoDoubleOptions {
  /** Directory holding `<owner>/<repo>.git` bare repositories. */
  projectRoot: string;
  /** Access token → the `owner/repo` names its user may read. */
  tokens: Record<string, string[]>;
  /** `owner/repo` names that need a token; every other repository is public. */
  privateRepos?: string[];
}

export interface ForgejoDoubleRequest {
  method: string;
  path: string;
  /** How a credential came (never its value). */
  auth: "none" | "token" | "bearer" | "basic" | "invalid";
  status: number;
}

export interface ForgejoDouble {
  /** `http://127.0.0.1:<port>`: the web and clone host. */
  url: string;
  /** `<url>/api/v1`, what FORGEJO_API_URL names. */
  apiUrl: string;
  cloneUrl(fullName: string): string;
  requests: ForgejoDoubleRequest[];
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json;charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startForgejoDouble(opts: ForgejoDoubleOptions): Promise<ForgejoDouble> {
  const privateRepos = new Set(opts.privateRepos ?? []);
  const requests: ForgejoDoubleRequest[] = [];
  let base = "";
  const swagger = () => `${base}/api/swagger`;

  /** Forgejo reads `token`, `Bearer` and Basic (the password, or the user name alone, is the token). */
  const credential = (req: IncomingMessage): { scheme: ForgejoDoubleRequest["auth"]; repos?: string[] } => {
    const header = req.headers.authorization;
    if (!header) return { scheme: "none" };
    const scheme = header.split(" ", 1)[0]!.toLowerCase();
    const value = header.slice(scheme.length + 1).trim();
    let presented: string | undefined;
    if (scheme === "token" || scheme === "bearer") presented = value;
    else if (scheme === "basic") {
      const decoded = Buffer.from(value, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      const password = colon < 0 ? "" : decoded.slice(colon + 1);
      presented = password === "" || password === "x-oauth-basic" ? decoded.slice(0, colon) : password;
    }
    const repos = presented === undefined ? undefined : opts.tokens[presented];
    if (repos === undefined) return { scheme: "invalid" };
    return { scheme: scheme as "token" | "bearer" | "basic", repos };
  };

  const access = (fullName: string, cred: ReturnType<typeof credential>): "ok" | "invalid" | "hidden" => {
    if (cred.scheme === "invalid") return "invalid";
    if (!privateRepos.has(fullName)) return "ok";
    return cred.repos?.includes(fullName) ? "ok" : "hidden";
  };

  const notFound = (res: ServerResponse, why: string) =>
    sendJson(res, 404, { errors: [why], message: "The target couldn't be found.", url: swagger() });

  async function contents(
    req: IncomingMessage,
    res: ServerResponse,
    fullName: string,
    path: string,
    ref: string,
  ): Promise<void> {
    const cred = credential(req);
    const allowed = access(fullName, cred);
    if (allowed === "invalid") {
      sendJson(res, 401, { message: "user does not exist [uid: 0, name: ]", url: swagger() });
      return;
    }
    const bareDir = `${opts.projectRoot}/${fullName}.git`;
    if (allowed === "hidden" || (await gitObjectType(bareDir, "HEAD")) === undefined) {
      notFound(res, "");
      return;
    }
    const spec = `${ref || "HEAD"}:${path}`;
    const type = await gitObjectType(bareDir, spec);
    if (type !== "blob") {
      notFound(res, `object does not exist [id: ${ref}, rel_path: ${path}]`);
      return;
    }
    const bytes = await readBlob(bareDir, spec);
    const blobSha = (await git(["--git-dir", bareDir, "rev-parse", spec])).trim();
    const commitSha = (await git(["--git-dir", bareDir, "rev-parse", `${ref || "HEAD"}^{commit}`])).trim();
    const url = `${base}/api/v1/repos/${fullName}/contents/${path}?ref=${ref}`;
    const htmlUrl = `${base}/${fullName}/src/commit/${commitSha}/${path}`;
    const gitUrl = `${base}/api/v1/repos/${fullName}/git/blobs/${blobSha}`;
    sendJson(res, 200, {
      name: path.split("/").pop() ?? path,
      path,
      sha: blobSha,
      last_commit_sha: commitSha,
      type: "file",
      size: bytes.length,
      encoding: "base64",
      content: bytes.toString("base64"),
      target: null,
      url,
      html_url: htmlUrl,
      git_url: gitUrl,
      download_url: `${base}/${fullName}/raw/commit/${commitSha}/${path}`,
      submodule_git_url: null,
      _links: { self: url, git: gitUrl, html: htmlUrl },
    });
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://double.invalid");
    const method = req.method ?? "GET";
    const cred = credential(req);
    const record = () =>
      requests.push({ method, path: url.pathname, auth: cred.scheme, status: res.statusCode });
    const handle = async (): Promise<void> => {
      let m = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)\/contents\/(.+)$/.exec(url.pathname);
      if (m && method === "GET") {
        const path = decodeURIComponent(m[3]!).replace(/\/+$/, "");
        return contents(req, res, `${m[1]}/${m[2]}`, path, url.searchParams.get("ref") ?? "");
      }
      m = /^\/([^/]+)\/([^/]+?)\.git(\/.*)$/.exec(url.pathname);
      if (m && (method === "GET" || method === "POST")) {
        const allowed = access(`${m[1]}/${m[2]}`, cred);
        if (allowed !== "ok") {
          res.writeHead(401, { "www-authenticate": 'Basic realm="Gitea"', "content-type": "text/plain" });
          res.end("Unauthorized\n");
          return;
        }
        return gitHttpBackend(req, res, opts.projectRoot, url.pathname, url.search.replace(/^\?/, ""));
      }
      sendJson(res, 404, { errors: null, message: "not found", url: swagger() });
    };
    handle().then(record, (err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: String(err), url: swagger() });
      else res.destroy();
      record();
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    apiUrl: `${base}/api/v1`,
    cloneUrl: (fullName) => `${base}/${fullName}.git`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forgejo's user object as its webhooks embed it. */
function forgejoUser(login: string, id: number): Record<string, unknown> {
  return {
    id,
    login,
    login_name: "",
    source_id: 0,
    full_name: "",
    email: `${login.toLowerCase()}@noreply.forgejo.invalid`,
    avatar_url: `https://forgejo.invalid/avatars/${id}`,
    html_url: `https://forgejo.invalid/${login}`,
    language: "",
    is_admin: false,
    last_login: "0001-01-01T00:00:00Z",
    created: "2024-01-01T00:00:00Z",
    restricted: false,
    active: false,
    prohibit_login: false,
    location: "",
    pronouns: "",
    website: "",
    description: "",
    visibility: "public",
    followers_count: 0,
    following_count: 0,
    starred_repos_count: 0,
    username: login,
  };
}

export interface ForgejoPush {
  /** The double (or Forgejo) base URL the repository lives on. */
  base: string;
  fullName: string;
  branch: string;
  before: string;
  after: string;
  private: boolean;
  defaultBranch?: string;
  pusher?: string;
}

/**
 * The body Forgejo's webhook sender posts for a branch push (services/webhook, `PushPayload`):
 * `compare_url` rather than GitHub's `compare`, `total_commits`, user objects with `login` and
 * `username`, a repository whose `owner` is a full user and no `installation`.
 */
export function forgejoPushPayload(push: ForgejoPush): Record<string, unknown> {
  const [owner, name] = push.fullName.split("/") as [string, string];
  const pusher = forgejoUser(push.pusher ?? owner, 2);
  const htmlUrl = `${push.base}/${push.fullName}`;
  const commit = {
    id: push.after,
    message: "deploy\n",
    url: `${htmlUrl}/commit/${push.after}`,
    author: { name: pusher.login, email: pusher.email, username: pusher.login },
    committer: { name: pusher.login, email: pusher.email, username: pusher.login },
    verification: null,
    timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
    added: [],
    removed: [],
    modified: ["www/index.html"],
  };
  return {
    ref: `refs/heads/${push.branch}`,
    before: push.before,
    after: push.after,
    compare_url: `${htmlUrl}/compare/${push.before}...${push.after}`,
    commits: [commit],
    total_commits: 1,
    head_commit: commit,
    repository: {
      id: 7,
      owner: forgejoUser(owner, 1),
      name,
      full_name: push.fullName,
      description: "",
      empty: false,
      private: push.private,
      fork: false,
      template: false,
      parent: null,
      mirror: false,
      size: 64,
      language: "",
      languages_url: `${push.base}/api/v1/repos/${push.fullName}/languages`,
      html_url: htmlUrl,
      url: `${push.base}/api/v1/repos/${push.fullName}`,
      link: "",
      ssh_url: `ssh://git@forgejo.invalid/${push.fullName}.git`,
      clone_url: `${htmlUrl}.git`,
      original_url: "",
      website: "",
      stars_count: 0,
      forks_count: 0,
      watchers_count: 1,
      open_issues_count: 0,
      open_pr_counter: 0,
      release_counter: 0,
      default_branch: push.defaultBranch ?? "main",
      archived: false,
      created_at: "2024-01-01T00:00:00Z",
      updated_at: "2024-01-01T00:00:00Z",
      archived_at: "1970-01-01T00:00:00Z",
      permissions: { admin: true, push: true, pull: true },
      has_issues: true,
      has_wiki: true,
      has_pull_requests: true,
      has_projects: true,
      has_releases: true,
      has_packages: true,
      has_actions: true,
      default_merge_style: "merge",
      avatar_url: "",
      internal: false,
      mirror_interval: "",
      object_format_name: "sha1",
      mirror_updated: "0001-01-01T00:00:00Z",
      repo_transfer: null,
    },
    pusher,
    sender: pusher,
  };
}

/**
 * The headers Forgejo sends with a delivery: its own `X-Forgejo-*`, the `X-Gitea-*` and
 * `X-Gogs-*` it keeps for compatibility, and the hex HMAC-SHA256 of the body as the signature.
 */
export function forgejoDeliveryHeaders(
  body: Buffer,
  secret: string,
  event = "push",
  deliveryId: string = randomUUID(),
): Record<string, string> {
  const signature = createHmac("sha256", secret).update(body).digest("hex");
  return {
    "content-type": "application/json",
    "user-agent": "Go-http-client/1.1",
    "x-forgejo-delivery": deliveryId,
    "x-forgejo-event": event,
    "x-forgejo-event-type": event,
    "x-forgejo-signature": signature,
    "x-gitea-delivery": deliveryId,
    "x-gitea-event": event,
    "x-gitea-event-type": event,
    "x-gitea-signature": signature,
    "x-gogs-delivery": deliveryId,
    "x-gogs-event": event,
    "x-gogs-event-type": event,
    "x-gogs-signature": signature,
    "x-hub-signature": `sha1=${createHmac("sha1", secret).update(body).digest("hex")}`,
    "x-hub-signature-256": `sha256=${signature}`,
  };
}
