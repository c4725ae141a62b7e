import { mkdir } from "node:fs/promises";
import { checkRepoUrl, type RepoUrlPolicy } from "../core/repo-url.js";
import type { BuildRequest } from "../pipeline/executor.js";
import { redactUrl } from "../pipeline/github.js";
import { invalid } from "./build-paths.js";
import { exec } from "./exec.js";
import { fail, type LineTail } from "./failure.js";

/** A commit sha (SHA-1 or SHA-256 object name). */
const SHA_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;

export interface CloneOptions {
  /** The git CLI. */
  git: string;
  /** git's HOME; nothing in it is read (no global or system config). */
  home: string;
  /** The SSRF check whose approved addresses the clone is pinned to. */
  checkRepo: (request: BuildRequest) => Promise<string[]>;
}

/**
 * The repo_url's host checked against the policy (every resolved address): the addresses the
 * clone is pinned to. The request's registry counts as a platform host. Throws
 * BUILD_REQUEST_INVALID, which the route answers with 400 before anything runs.
 */
export async function checkRepo(
  request: Pick<BuildRequest, "repo_url" | "registry">,
  base: RepoUrlPolicy,
): Promise<string[]> {
  const checked = await checkRepoUrl(request.repo_url, {
    ...base,
    platformHosts: () => [...(base.platformHosts?.() ?? []), request.registry],
  });
  if ("problem" in checked) throw invalid(checked.problem);
  return checked.addresses;
}

/**
 * git with no user or system config, no prompts, the clone token (if any) as a header, no
 * HTTP redirects (one could lead anywhere the check refused) and the repo host pinned to the
 * addresses `checkRepo` approved (no second lookup for a rebinding DNS to answer).
 */
function gitEnv(request: BuildRequest, pinned: string[], home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    HOME: home,
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ASKPASS: "/bin/false",
    LC_ALL: "C",
  };
  const config: [string, string][] = [
    ["credential.helper", ""],
    ["protocol.allow", "never"],
    ["protocol.https.allow", "always"],
    ["protocol.http.allow", "always"],
    ["advice.detachedHead", "false"],
    ["http.followRedirects", "false"],
  ];
  const url = new URL(request.repo_url);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (pinned.length > 0 && host !== pinned[0]) {
    const addresses = pinned.map((a) => (a.includes(":") ? `[${a}]` : a)).join(",");
    config.push(["http.curloptResolve", `${host}:${port}:${addresses}`]);
  }
  if (request.clone_token !== undefined) {
    // The token rides in an environment variable, not in the URL: a URL would show in the
    // process list (git passes it to git-remote-http as an argument) and could end up in
    // .git/config; the environment is readable only by this user.
    const basic = Buffer.from(
      `${request.clone_username ?? "x-access-token"}:${request.clone_token}`,
    ).toString("base64");
    config.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
  }
  env["GIT_CONFIG_COUNT"] = String(config.length);
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return env;
}

/**
 * Fetches `request.ref` into a fresh `cloneDir` and checks it out; the commit sha checked out.
 * Throws BUILD_CLONE_FAILED.
 */
export async function cloneRepo(
  opts: CloneOptions,
  request: BuildRequest,
  cloneDir: string,
  emit: (line: string) => void,
  tail: LineTail,
  signal: AbortSignal | undefined,
): Promise<string> {
  let pinned: string[];
  try {
    pinned = await opts.checkRepo(request);
  } catch (err) {
    throw fail("BUILD_CLONE_FAILED", (err as Error).message, {
      stage: "clone",
      user_fault: true,
      log_tail: tail.lines(),
    });
  }
  const env = gitEnv(request, pinned, opts.home);
  const git = (args: string[], onLine = emit) => exec(opts.git, args, { cwd: cloneDir, env, signal, onLine });
  // The URL as our check parsed it, so git cannot read a host the check did not see.
  const url = new URL(request.repo_url).href;
  const cloneFailed = (what: string) =>
    fail("BUILD_CLONE_FAILED", `${what} ${redactUrl(url)} at ${request.ref} failed`, {
      stage: "clone",
      user_fault: false,
      log_tail: tail.lines(),
    });
  await mkdir(cloneDir, { recursive: true });
  emit(`$ git fetch --depth 1 ${redactUrl(url)} ${request.ref}`);
  if ((await git(["init", "--quiet", "."])).code !== 0) throw cloneFailed("git init for");
  const shallow = await git(["fetch", "--quiet", "--depth", "1", "--no-tags", url, request.ref]);
  if (shallow.code !== 0) {
    // Servers that refuse a bare sha in `want` (no allowReachableSHA1InWant) still serve it
    // through their refs: fetch everything, then check the sha out.
    if (!SHA_RE.test(request.ref)) throw cloneFailed("fetching");
    emit("shallow fetch by sha refused; fetching all branches and tags");
    const full = await git([
      "fetch",
      "--quiet",
      "--no-tags",
      url,
      "+refs/heads/*:refs/remotes/origin/*",
      "+refs/tags/*:refs/tags/*",
    ]);
    if (full.code !== 0) throw cloneFailed("fetching");
    if ((await git(["checkout", "--quiet", "--detach", request.ref])).code !== 0) {
      throw cloneFailed("checking out");
    }
  } else if ((await git(["checkout", "--quiet", "--detach", "FETCH_HEAD"])).code !== 0) {
    throw cloneFailed("checking out");
  }
  const head = await exec(opts.git, ["rev-parse", "HEAD"], { cwd: cloneDir, env, signal });
  const sha = head.lines
    .find((l) => SHA_RE.test(l.trim()))
    ?.trim()
    .toLowerCase();
  if (head.code !== 0 || sha === undefined) throw cloneFailed("resolving HEAD of");
  if (SHA_RE.test(request.ref) && sha !== request.ref.toLowerCase()) {
    throw fail("BUILD_CLONE_FAILED", `asked for commit ${request.ref} but checked out ${sha}`, {
      stage: "clone",
      user_fault: false,
      log_tail: tail.lines(),
    });
  }
  emit(`checked out ${sha}`);
  return sha;
}
