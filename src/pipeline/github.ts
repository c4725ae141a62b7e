import { createPrivateKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { TabbifyError } from "../core/errors.js";
import { parseRepoCoordinates } from "./git-remote.js";

/**
 * The GitHub App calls the pipeline makes, and nothing more: the app JWT, the installation token,
 * one file from the contents API, and a clone URL carrying the token. Works against any API base
 * (api.github.com, GitHub Enterprise `https://host/api/v3`, the test double).
 *
 * Tokens and keys never appear in errors or logs: messages name the call and the status only.
 */

export const GITHUB_API_URL = "https://api.github.com";
const API_VERSION = "2022-11-28";

/** Accepts PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) and PKCS#8 PEM. */
export function loadAppPrivateKey(privateKeyPem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch {
    throw new TabbifyError(
      "GITHUB_APP_KEY_INVALID",
      "GitHub App private key is not a readable PEM private key",
    );
  }
  if (key.asymmetricKeyType !== "rsa") {
    throw new TabbifyError("GITHUB_APP_KEY_INVALID", "GitHub App private key must be an RSA key (RS256)");
  }
  return key;
}

/**
 * The App's JWT: RS256, `iss` = app id, issued 60 s in the past (GitHub's advice against clock
 * drift) and expiring 9 minutes from now (GitHub refuses more than 10 minutes after `iat`).
 */
export async function appJwt(
  appId: string | number,
  privateKey: string | KeyObject,
  nowMs: number = Date.now(),
): Promise<string> {
  const key = typeof privateKey === "string" ? loadAppPrivateKey(privateKey) : privateKey;
  const now = Math.floor(nowMs / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(String(appId))
    .setIssuedAt(now - 60)
    .setExpirationTime(now + 9 * 60)
    .sign(key);
}

/**
 * How a token is presented: GitHub documents `Bearer`; Forgejo documents `token <t>` for its
 * access tokens (and accepts Bearer only for OAuth2 tokens on some versions).
 */
export type AuthScheme = "Bearer" | "token";

function apiHeaders(
  bearer: string | undefined,
  accept = "application/vnd.github+json",
  scheme: AuthScheme = "Bearer",
): Record<string, string> {
  const headers: Record<string, string> = {
    accept,
    "x-github-api-version": API_VERSION,
    "user-agent": "tabbify-node",
  };
  if (bearer !== undefined) headers["authorization"] = `${scheme} ${bearer}`;
  return headers;
}

function apiBase(apiUrl: string): string {
  return apiUrl.replace(/\/+$/, "");
}

async function call(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
    throw new TabbifyError(
      "GITHUB_UNREACHABLE",
      `${what}: GitHub API at ${redactUrl(url)} unreachable (${cause})`,
    );
  }
}

/** GitHub's error bodies are `{message, documentation_url}`; the message never echoes credentials. */
async function githubMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === "string") return body.message.slice(0, 300);
  } catch {
    // not JSON: fall through to the status line alone
  }
  return res.statusText;
}

export interface InstallationToken {
  token: string;
  /** ISO 8601, as GitHub sends it. */
  expires_at: string;
}

/** `POST /app/installations/{id}/access_tokens` → a token for cloning and reading contents. */
export async function installationToken(
  apiUrl: string,
  jwt: string,
  installationId: number,
): Promise<InstallationToken> {
  if (!Number.isSafeInteger(installationId) || installationId <= 0) {
    throw new TabbifyError("GITHUB_INSTALLATION_INVALID", "installation id must be a positive integer");
  }
  const what = `minting a token for installation ${installationId}`;
  const res = await call(
    `${apiBase(apiUrl)}/app/installations/${installationId}/access_tokens`,
    { method: "POST", headers: apiHeaders(jwt) },
    what,
  );
  if (res.status !== 201 && res.status !== 200) {
    throw new TabbifyError(
      "GITHUB_TOKEN_MINT_FAILED",
      `${what}: GitHub answered ${res.status} (${await githubMessage(res)})`,
      { status: res.status },
    );
  }
  const body = (await res.json()) as Partial<InstallationToken>;
  if (typeof body.token !== "string" || body.token === "" || typeof body.expires_at !== "string") {
    throw new TabbifyError("GITHUB_TOKEN_MINT_FAILED", `${what}: response lacks token/expires_at`);
  }
  return { token: body.token, expires_at: body.expires_at };
}

/**
 * `GET /repos/{owner}/{repo}/installation` with the app JWT: the installation of this App that
 * covers the repository, or undefined when the App is not installed there (GitHub answers 404).
 * What a deploy that names no installation (`POST /v1/deploy`) mints its token for.
 */
export async function repoInstallation(
  apiUrl: string,
  jwt: string,
  owner: string,
  repo: string,
): Promise<number | undefined> {
  const what = `looking up the App installation of ${owner}/${repo}`;
  const res = await call(
    `${apiBase(apiUrl)}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/installation`,
    { headers: apiHeaders(jwt) },
    what,
  );
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  if (res.status !== 200) {
    const code = res.status === 401 || res.status === 403 ? "GITHUB_AUTH_FAILED" : "GITHUB_API_FAILED";
    throw new TabbifyError(code, `${what}: GitHub answered ${res.status} (${await githubMessage(res)})`, {
      status: res.status,
    });
  }
  const body = (await res.json()) as { id?: unknown };
  if (typeof body.id !== "number" || !Number.isSafeInteger(body.id) || body.id <= 0) {
    throw new TabbifyError("GITHUB_API_FAILED", `${what}: the answer has no installation id`);
  }
  return body.id;
}

/**
 * One file at a commit through the contents API, or null when the file (or the repository, as
 * GitHub hides private repos behind 404) does not exist. Files over 1 MB come back without inline
 * content; those are fetched again as raw bytes.
 */
export async function fetchFile(
  apiUrl: string,
  token: string | undefined,
  owner: string,
  repo: string,
  path: string,
  sha: string,
  scheme: AuthScheme = "Bearer",
): Promise<Buffer | null> {
  const encodedPath = path
    .split("/")
    .filter((segment) => segment !== "")
    .map(encodeURIComponent)
    .join("/");
  const url = `${apiBase(apiUrl)}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/contents/${encodedPath}?ref=${encodeURIComponent(sha)}`;
  const what = `reading ${path} of ${owner}/${repo} at ${sha}`;
  const res = await call(url, { headers: apiHeaders(token, undefined, scheme) }, what);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (res.status !== 200) {
    const code = res.status === 401 || res.status === 403 ? "GITHUB_AUTH_FAILED" : "GITHUB_API_FAILED";
    throw new TabbifyError(code, `${what}: GitHub answered ${res.status} (${await githubMessage(res)})`, {
      status: res.status,
    });
  }
  const body = (await res.json()) as { type?: unknown; encoding?: unknown; content?: unknown };
  if (body.type !== "file") {
    throw new TabbifyError("GITHUB_API_FAILED", `${what}: ${path} is a ${String(body.type)}, not a file`);
  }
  if (body.encoding === "base64" && typeof body.content === "string") {
    return Buffer.from(body.content, "base64");
  }
  const raw = await call(
    url,
    { headers: apiHeaders(token, "application/vnd.github.raw+json", scheme) },
    what,
  );
  if (raw.status !== 200) {
    throw new TabbifyError("GITHUB_API_FAILED", `${what}: raw download answered ${raw.status}`);
  }
  return Buffer.from(await raw.arrayBuffer());
}

/** `owner` and `repo` of a repository URL, in any form {@link parseRepoCoordinates} reads. */
export function repoCoordinates(repoUrl: string): { owner: string; repo: string } {
  const parsed = parseRepoCoordinates(repoUrl);
  if (parsed === undefined) {
    throw new TabbifyError("REPO_URL_INVALID", `repository URL ${redactUrl(repoUrl)} has no owner/repo`);
  }
  return { owner: parsed.owner, repo: parsed.repo };
}

/** The clone URL with `x-access-token:<token>@`, the form GitHub documents for App tokens. */
export function authenticatedCloneUrl(cloneUrl: string, token: string): string {
  let url: URL;
  try {
    url = new URL(cloneUrl);
  } catch {
    throw new TabbifyError("REPO_URL_INVALID", "clone URL is not a URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TabbifyError("REPO_URL_INVALID", `clone URL scheme ${url.protocol} cannot carry a token`);
  }
  url.username = "x-access-token";
  url.password = token;
  return url.toString();
}

/**
 * The text with every `scheme://user:pass@` credential removed, for logs and errors. Works on a
 * bare URL and on a line of tool output that quotes one (git echoes its remote URL).
 */
export function redactUrl(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s'"]*@/gi, "$1");
}
