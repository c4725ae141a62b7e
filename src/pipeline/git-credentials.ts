import { readFile, stat } from "node:fs/promises";
import { TabbifyError } from "../core/errors.js";

/**
 * Credentials the node holds for git hosts that are no configured forge (`--git-credentials FILE`,
 * git-credential-store's format: one `https://USER:PASSWORD@HOST[:PORT]` per line, percent-encoded).
 * The file must be private (0600): it is refused otherwise. A deploy to a listed host reads
 * tabbify.toml and clones with that user and password; they travel as an Authorization header in
 * git's environment (GIT_CONFIG_*), never in a URL, an argv or a recorded message.
 */

export interface GitCredential {
  username: string;
  password: string;
}

export type HostCredentials = (repoUrl: string) => GitCredential | undefined;

const safeUsername = /^[^\s:]{1,200}$/;

export function isSafeGitUsername(username: string): boolean {
  return safeUsername.test(username);
}

/** `host[:port]` (lowercase) → credential, from the file's text. Bad lines are refused by number. */
export function parseGitCredentials(text: string, source: string): Map<string, GitCredential> {
  const out = new Map<string, GitCredential>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    let url: URL;
    try {
      url = new URL(line);
    } catch {
      throw new TabbifyError("USAGE", `${source} line ${i + 1}: not a URL (want https://USER:PASSWORD@HOST)`);
    }
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    if (
      (url.protocol !== "https:" && url.protocol !== "http:") ||
      !password ||
      !isSafeGitUsername(username)
    ) {
      throw new TabbifyError(
        "USAGE",
        `${source} line ${i + 1}: want https://USER:PASSWORD@HOST (a user without spaces or colons, and a password)`,
      );
    }
    out.set(url.host.toLowerCase(), { username, password });
  });
  return out;
}

export async function loadGitCredentials(path: string): Promise<HostCredentials> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new TabbifyError(
      "KEY_FILE_EXPOSED",
      `${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
    );
  }
  const byHost = parseGitCredentials(await readFile(path, "utf8"), path);
  return (repoUrl) => {
    try {
      return byHost.get(new URL(repoUrl).host.toLowerCase());
    } catch {
      return undefined;
    }
  };
}

/**
 * ssh remotes (`ssh://…`, `git+ssh://…`, scp-like `user@host:path`) are refused with their own
 * code where no ssh importer is wired (src/node/ssh-fetch.ts): the builder, which clones on
 * another machine, holds no ssh key, so only the node can fetch them (see docs/DECISIONS.md).
 */
export function refuseSshRemote(repoUrl: string): void {
  const scpLike = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)/.test(repoUrl);
  if (/^(git\+)?ssh:\/\//i.test(repoUrl) || /^ssh\+git:\/\//i.test(repoUrl) || scpLike) {
    throw new TabbifyError(
      "SSH_REMOTE_UNSUPPORTED",
      "ssh git remotes are not deployed: serve the repository over https (with a --git-credentials entry if it is private), or git push it to the node at /git/<app>.git",
    );
  }
}
