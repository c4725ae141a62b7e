import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { checkGitRef } from "../core/git-ref.js";
import type { ManifestSource } from "./executor.js";
import { redactUrl } from "./github.js";
import { TABBIFY_TOML } from "./tabbify-toml.js";

/**
 * Any git remote read with git itself: `git ls-remote` resolves a ref to a commit, and a shallow,
 * blob-filtered fetch of that commit reads tabbify.toml (one blob crosses the wire, not the tree's
 * contents). For hosts that are no configured forge (GitHub, Forgejo) — a self-hosted git server,
 * cgit, `git http-backend`, the node's own push repositories.
 *
 * Nothing from a request is ever read by git as an option: refs and URLs are checked first
 * ({@link checkGitRef}, {@link checkGitUrl}) and every positional argument follows `--`.
 * Credentials ride in the environment as an `http.extraHeader` (GIT_CONFIG_*), never in argv.
 */

const SHA_RE = /^[0-9a-f]{40}$/i;
/** tabbify.toml is small; a bigger blob is refused rather than read whole. */
const MANIFEST_LIMIT = 1024 * 1024;

/** A repository on this machine's disk: `file://…` or an absolute path. */
export function isLocalRepoUrl(raw: string): boolean {
  return raw.startsWith("/") || raw.startsWith("file://");
}

export interface GitUrlPolicy {
  /** `--allow-local-repos`: file:// URLs and plain paths on the node's own disk. */
  allowLocal: boolean;
}

/**
 * Whether git may be pointed at this remote: https, http, ssh, and (only with `allowLocal`)
 * file:// and absolute paths. Never `ext::`, `fd::` or anything beginning with `-`.
 */
export function checkGitUrl(raw: string, policy: GitUrlPolicy): string | undefined {
  if (raw.startsWith("-")) return "repo_url must not begin with '-'";
  if (/[\s\0]/.test(raw)) return "repo_url must not contain whitespace or control characters";
  if (isLocalRepoUrl(raw)) {
    if (!policy.allowLocal) {
      return "repo_url names a local repository: refused unless the node runs with --allow-local-repos (TABBIFY_ALLOW_LOCAL_REPOS=1; `tabbify up` sets it)";
    }
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "repo_url is not a URL";
  }
  if (!["https:", "http:", "ssh:"].includes(url.protocol)) {
    return `repo_url must be an https, http or ssh git URL, not ${url.protocol}`;
  }
  if (url.hostname === "" || url.hostname.startsWith("-")) return "repo_url has no usable host";
  return undefined;
}

/**
 * `owner` and `repo` of a git remote, however it is written: `https://host/owner/repo(.git)(/)`,
 * GitHub Enterprise and Forgejo under a subpath (`https://host/git/owner/repo`), with a port,
 * `ssh://git@host:2222/owner/repo.git`, scp-like `git@host:owner/repo.git`. The last two path
 * segments; undefined when there are not two.
 */
export function parseRepoCoordinates(raw: string): { host: string; owner: string; repo: string } | undefined {
  let host: string;
  let path: string;
  const scp = /^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!\/\/)(.+)$/.exec(raw);
  if (scp && !raw.includes("://")) {
    host = scp[1]!.toLowerCase();
    path = scp[2]!;
  } else {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return undefined;
    }
    if (!["https:", "http:", "ssh:", "git:"].includes(url.protocol) || url.hostname === "") return undefined;
    host = url.host.toLowerCase();
    path = url.pathname;
  }
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.length < 2) return undefined;
  const owner = parts[parts.length - 2]!;
  const repo = parts[parts.length - 1]!.replace(/\.git$/, "");
  if (owner === "" || repo === "" || owner.startsWith("-") || repo.startsWith("-")) return undefined;
  if (![owner, repo].every((p) => /^[A-Za-z0-9._~-]+$/.test(p))) return undefined;
  return { host, owner, repo };
}

/** How git runs here: no user or system config, no prompts, no redirects, the token in env. */
export function gitRemoteEnv(home: string, token?: string, username = "x-access-token"): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    HOME: home,
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ASKPASS: "/bin/false",
    GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
    LC_ALL: "C",
  };
  const config: [string, string][] = [
    ["credential.helper", ""],
    ["protocol.allow", "never"],
    ["protocol.https.allow", "always"],
    ["protocol.http.allow", "always"],
    ["protocol.ssh.allow", "always"],
    ["protocol.file.allow", "always"],
    ["http.followRedirects", "false"],
  ];
  if (token !== undefined && token !== "") {
    const basic = Buffer.from(`${username}:${token}`).toString("base64");
    config.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
  }
  env["GIT_CONFIG_COUNT"] = String(config.length);
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return env;
}

interface GitRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs git, keeping at most `limit` bytes of stdout (more is an error, never buffered whole). */
function runGit(
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; limit?: number },
): Promise<GitRun> {
  const limit = opts.limit ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = "";
    let overflow = false;
    child.stdout.on("data", (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > limit) {
        overflow = true;
        child.kill("SIGKILL");
        return;
      }
      out.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (err.length < 8192) err += chunk.toString("utf8");
    });
    child.on("error", (e) => reject(e));
    child.on("close", (code) => {
      if (overflow) {
        reject(new TabbifyError("MANIFEST_TOO_LARGE", `git output exceeds ${limit} bytes`));
        return;
      }
      resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString("utf8"), stderr: redactUrl(err) });
    });
  });
}

function gitFailed(what: string, run: GitRun): TabbifyError {
  const detail = run.stderr.trim().split("\n").slice(-3).join("; ").slice(0, 400);
  return new TabbifyError("GIT_REMOTE_FAILED", `${what} failed (git exit ${run.code}: ${detail})`);
}

/**
 * The commit a ref names on the remote (`git ls-remote`): a 40-hex sha as itself; a branch or tag
 * (a tag's peeled commit when annotated). Throws GIT_REF_NOT_FOUND when the remote has no such ref.
 */
export async function resolveRemoteRef(
  url: string,
  ref: string,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<string> {
  assertSafe(url, ref);
  if (SHA_RE.test(ref)) return ref.toLowerCase();
  const patterns = ref.startsWith("refs/")
    ? [ref]
    : [`refs/heads/${ref}`, `refs/tags/${ref}`, `refs/tags/${ref}^{}`];
  const run = await runGit(["ls-remote", "--", url, ...patterns], { cwd, env });
  if (run.code !== 0) throw gitFailed(`git ls-remote ${redactUrl(url)}`, run);
  const refs = new Map<string, string>();
  for (const line of run.stdout.split("\n")) {
    const [sha, name] = line.split("\t");
    if (sha && name && SHA_RE.test(sha)) refs.set(name, sha.toLowerCase());
  }
  const found =
    refs.get(`refs/heads/${ref}`) ??
    refs.get(`refs/tags/${ref}^{}`) ??
    refs.get(`refs/tags/${ref}`) ??
    refs.get(ref);
  if (found === undefined) {
    throw new TabbifyError("GIT_REF_NOT_FOUND", `${redactUrl(url)} has no branch or tag ${ref}`);
  }
  return found;
}

/** Belt and braces: whatever reached here is refused again before git runs. */
function assertSafe(url: string, ref: string): void {
  if (url.startsWith("-") || /[\s\0]/.test(url)) {
    throw new TabbifyError("REPO_URL_INVALID", "repo_url must not begin with '-' or contain whitespace");
  }
  const refProblem = checkGitRef(ref);
  if (refProblem !== undefined) throw new TabbifyError("DEPLOY_REQUEST_INVALID", refProblem);
}

/**
 * One file at a commit, through a shallow, blob-filtered fetch into a scratch repository: the
 * commit and its trees arrive, and only the one blob asked for is fetched lazily. Null when the
 * commit has no such file.
 */
export async function readRemoteFile(
  url: string,
  sha: string,
  path: string,
  token?: string,
  username?: string,
): Promise<string | null> {
  assertSafe(url, sha);
  const scratch = await mkdtemp(join(tmpdir(), "tabbify-git-remote-"));
  try {
    const env = gitRemoteEnv(scratch, token, username);
    const git = (args: string[], limit?: number) =>
      runGit(args, { cwd: scratch, env, ...(limit !== undefined ? { limit } : {}) });
    const init = await git(["init", "--quiet", "--bare", "."]);
    if (init.code !== 0) throw gitFailed("git init", init);
    // A named remote, so the filtered fetch marks it a promisor and the blob can be fetched lazily.
    const add = await git(["remote", "add", "origin", "--", url]);
    if (add.code !== 0) throw gitFailed("git remote add", add);
    const fetch = await git([
      "fetch",
      "--quiet",
      "--depth=1",
      "--filter=blob:none",
      "--no-tags",
      "origin",
      "--",
      sha,
    ]);
    if (fetch.code !== 0) throw gitFailed(`fetching ${sha} from ${redactUrl(url)}`, fetch);
    const type = await git(["cat-file", "-t", "--", `${sha}:${path}`]);
    if (type.code !== 0) return null;
    if (type.stdout.trim() !== "blob") {
      throw new TabbifyError("GIT_REMOTE_FAILED", `${path} at ${sha} is a ${type.stdout.trim()}, not a file`);
    }
    const blob = await git(["cat-file", "blob", `${sha}:${path}`], MANIFEST_LIMIT);
    if (blob.code !== 0) throw gitFailed(`reading ${path} at ${sha}`, blob);
    return blob.stdout;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** tabbify.toml read with git itself, for any remote that is no configured forge. */
export function gitManifestSource(): ManifestSource {
  return {
    async fetchManifest(repoUrl, ref, token, username) {
      const scratch = await mkdtemp(join(tmpdir(), "tabbify-git-ref-"));
      try {
        const sha = await resolveRemoteRef(repoUrl, ref, gitRemoteEnv(scratch, token, username), scratch);
        return await readRemoteFile(repoUrl, sha, TABBIFY_TOML, token, username);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}
