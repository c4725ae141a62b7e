import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { TabbifyError } from "../core/errors.js";
import { checkGitRef } from "../core/git-ref.js";
import { checkRepoUrl, type RepoUrlPolicy } from "../core/repo-url.js";
import { parseSshRemote, type SshRemote } from "../core/ssh-remote.js";
import { ensurePushRepo, pruneStagedRef } from "./git-push.js";

/**
 * ssh git remotes (`ssh://[user@]host[:port]/path`, scp-like `user@host:path`): the NODE fetches
 * the ref with its own key into one of its push repositories (`refs/tabbify/staged/<sha>`), and
 * the builder clones it from `/git/<name>.git` over HTTP, as it does a local repository or a push.
 * The builder never holds an ssh key.
 *
 * The key and known_hosts are the operator's, in the ssh dir (`--ssh-dir`, default
 * `<data>/ssh`): `id_ed25519` and `known_hosts`. Host keys are never accepted on first use
 * (StrictHostKeyChecking=yes): an unknown host fails with SSH_HOST_KEY_UNKNOWN naming the file to
 * fill. Nothing from the request reaches ssh as an option: user, host and port are checked against
 * narrow patterns, and git itself also refuses a host or path beginning with `-`.
 */

export interface SshFetchOptions {
  dataDir: string;
  /** Holds `id_ed25519` and `known_hosts` (the operator's). */
  sshDir: string;
  /** The node's own URL: the builder clones `<selfUrl>/git/<name>.git`. */
  selfUrl: () => string;
  /** The SSRF guard, applied to the ssh host as to an https one. */
  repoPolicy: RepoUrlPolicy;
}

/** Paths go into GIT_SSH_COMMAND, which git runs through a shell: only quote-free ones. */
function shellQuoted(path: string): string {
  if (/['\0\n]/.test(path)) {
    throw new TabbifyError(
      "USAGE",
      `the ssh dir ${JSON.stringify(path)} must not contain quotes or newlines`,
    );
  }
  return `'${path}'`;
}

export function sshCommand(sshDir: string): string {
  return [
    "ssh",
    "-F",
    "/dev/null",
    "-i",
    shellQuoted(join(sshDir, "id_ed25519")),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${shellQuoted(join(sshDir, "known_hosts"))}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=15",
  ].join(" ");
}

function run(
  cwd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      if (stdout.length < 4096) stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * The push repository an ssh remote is fetched into: `ssh-<last path segment>-<8 hex of the URL>`,
 * so two hosts' `app.git` never share a repository (nor, through its URL, an app uuid).
 */
export function sshRepoName(remote: SshRemote): string {
  const base = (remote.path.replace(/\/+$/, "").split("/").pop() ?? "").replace(/\.git$/, "").toLowerCase();
  const slug =
    base
      .replace(/[^a-z0-9-]/g, "-")
      .replace(/^-+/, "")
      .slice(0, 50) || "repo";
  return `ssh-${slug}-${createHash("sha256").update(remote.url).digest("hex").slice(0, 8)}`;
}

/**
 * Fetches `ref` of an ssh remote into the node's push repository and stages its commit; returns
 * the URL the builder clones and the sha. Errors are coded and never carry ssh's own output
 * beyond its first line about the host.
 */
export async function importSshRepo(
  opts: SshFetchOptions,
  source: string,
  ref: string,
): Promise<{ repoUrl: string; sha: string }> {
  const remote = parseSshRemote(source);
  if ("problem" in remote) throw new TabbifyError("REPO_URL_REFUSED", remote.problem);
  const refProblem = checkGitRef(ref);
  if (refProblem !== undefined) throw new TabbifyError("DEPLOY_REQUEST_INVALID", refProblem);
  const target = await checkRepoUrl(`https://${remote.host}/`, opts.repoPolicy);
  if ("problem" in target) throw new TabbifyError("REPO_URL_REFUSED", target.problem);
  const keyFile = join(opts.sshDir, "id_ed25519");
  const knownHosts = join(opts.sshDir, "known_hosts");
  try {
    await access(keyFile);
  } catch {
    throw new TabbifyError(
      "SSH_KEY_MISSING",
      `the node has no ssh key for git remotes: put a private key at ${keyFile} (ssh-keygen -t ed25519 -N '' -f ${keyFile}) and add its .pub to the git host`,
    );
  }
  const hostEntry =
    remote.port !== undefined && remote.port !== 22 ? `[${remote.host}]:${remote.port}` : remote.host;
  const known = await readFile(knownHosts, "utf8").catch(() => "");
  if (!known.split("\n").some((line) => line.trim().split(/\s+/)[0]?.split(",").includes(hostEntry))) {
    throw new TabbifyError(
      "SSH_HOST_KEY_UNKNOWN",
      `${hostEntry} is not in ${knownHosts}: host keys are never accepted on first use; check the host's key and add its line there (ssh-keyscan${remote.port !== undefined ? ` -p ${remote.port}` : ""} ${remote.host} shows it)`,
    );
  }
  const name = sshRepoName(remote);
  const dir = join(opts.dataDir, "git", `${name}.git`);
  await ensurePushRepo(dir);
  // No agent: the node's one key file is the only identity offered.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_SSH_COMMAND: sshCommand(opts.sshDir),
    GIT_TERMINAL_PROMPT: "0",
  };
  delete env.SSH_AUTH_SOCK;
  const scratch = `refs/tabbify/fetching/${randomBytes(8).toString("hex")}`;
  const fetched = await run(
    dir,
    ["fetch", "--quiet", "--no-tags", "--", remote.url, `+${ref}:${scratch}`],
    env,
  );
  if (fetched.code !== 0) {
    if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(fetched.stderr)) {
      throw new TabbifyError(
        "SSH_HOST_KEY_UNKNOWN",
        `${hostEntry}'s host key does not match ${knownHosts}: refused (fix that line if the host's key really changed)`,
      );
    }
    if (/couldn't find remote ref|not our ref|no such remote ref/i.test(fetched.stderr)) {
      throw new TabbifyError("GIT_REF_NOT_FOUND", `${remote.url} has no branch, tag or commit ${ref}`);
    }
    const first =
      fetched.stderr.split("\n").find((l) => l.trim() !== "") ?? `git fetch exited ${fetched.code}`;
    throw new TabbifyError(
      "SSH_FETCH_FAILED",
      `fetching ${remote.url} over ssh failed: ${first.slice(0, 200)}`,
    );
  }
  const parsed = await run(dir, ["rev-parse", "--verify", `${scratch}^{commit}`], env);
  const sha = parsed.stdout.trim();
  await run(dir, ["update-ref", `refs/tabbify/staged/${sha}`, sha], env);
  await run(dir, ["update-ref", "-d", scratch], env);
  if (parsed.code !== 0 || !/^[0-9a-f]{40}$/.test(sha)) {
    throw new TabbifyError("GIT_REF_NOT_FOUND", `${remote.url} ${ref} is not a commit`);
  }
  return { repoUrl: `${opts.selfUrl()}/git/${name}.git`, sha };
}

/** Once a deploy of an ssh remote has ended, its staged ref goes (`git gc --auto` may collect it). */
export async function pruneSshStaged(
  dataDir: string,
  repoUrl: string,
  sha: string | undefined,
): Promise<void> {
  const m = /\/git\/(ssh-[a-z0-9-]{1,59})\.git$/.exec(repoUrl);
  if (!m || sha === undefined || !/^[0-9a-f]{40}$/.test(sha)) return;
  await pruneStagedRef(join(dataDir, "git", `${m[1]}.git`), sha);
}

/** The deploy route's ssh importer, with each deploy's staged ref pruned once it has ended. */
export function sshRepoImporter(
  pipeline: {
    onDeployEnded(listener: (record: { request: { repoUrl: string; sha?: string } }) => Promise<void>): void;
  },
  opts: SshFetchOptions,
): (source: string, ref: string) => Promise<{ repoUrl: string; sha: string }> {
  pipeline.onDeployEnded(async (record) => {
    await pruneSshStaged(opts.dataDir, record.request.repoUrl, record.request.sha).catch(() => undefined);
  });
  return (source, ref) => importSshRepo(opts, source, ref);
}
