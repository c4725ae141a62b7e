/**
 * ssh git remotes as a deploy may name them: `ssh://[user@]host[:port]/path` (also `git+ssh://`,
 * `ssh+git://`) and scp-like `user@host:path`. User, host and path are held to narrow patterns so
 * nothing in them can reach ssh or git as an option (`-oProxyCommand=…`), a shell word or a
 * traversal. The node fetches these itself (src/node/ssh-fetch.ts).
 */

export interface SshRemote {
  user?: string;
  host: string;
  port?: number;
  path: string;
  /** The remote as git is given it (always the `ssh://` form). */
  url: string;
}

const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;
const HOST_RE = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/;
const PATH_RE = /^[A-Za-z0-9._~/-]{1,1024}$/;

export function isSshRepoUrl(raw: string): boolean {
  return (
    /^(git\+)?ssh:\/\//i.test(raw) || /^ssh\+git:\/\//i.test(raw) || /^[^/:@\s]+@[^/:\s]+:(?!\/\/)/.test(raw)
  );
}

/** The parts of an ssh remote, or why it is refused (every refusal happens before ssh runs). */
export function parseSshRemote(raw: string): SshRemote | { problem: string } {
  let user: string | undefined;
  let host: string;
  let port: number | undefined;
  let path: string;
  if (/[\s\0]/.test(raw)) return { problem: "repo_url must not contain whitespace or control characters" };
  const scp = /^([^/:@]+)@([^/:]+):(?!\/\/)(.+)$/.exec(raw);
  if (scp && !raw.includes("://")) {
    user = scp[1]!;
    host = scp[2]!;
    path = scp[3]!.startsWith("/") ? scp[3]! : `/${scp[3]!}`;
  } else {
    let url: URL;
    try {
      url = new URL(raw.replace(/^(git\+ssh|ssh\+git):/i, "ssh:"));
    } catch {
      return { problem: "repo_url is not an ssh URL" };
    }
    if (url.protocol !== "ssh:") return { problem: "repo_url is not an ssh URL" };
    if (url.password !== "")
      return { problem: "repo_url must not carry a password: the node uses its own ssh key" };
    if (url.search !== "" || url.hash !== "")
      return { problem: "repo_url must not have a query or fragment" };
    user = url.username === "" ? undefined : decodeURIComponent(url.username);
    host = url.hostname;
    port = url.port === "" ? undefined : Number(url.port);
    path = decodeURIComponent(url.pathname);
  }
  if (user !== undefined && !USER_RE.test(user))
    return { problem: "repo_url's ssh user must be letters, digits, '.', '_' or '-' (not first)" };
  if (!HOST_RE.test(host) || host.includes(".."))
    return { problem: "repo_url's ssh host must be a host name or IPv4 address" };
  if (!PATH_RE.test(path) || path.split("/").includes("..") || path === "/") {
    return {
      problem: "repo_url's ssh path must be a repository path (letters, digits, '.', '_', '~', '-', '/')",
    };
  }
  const url = `ssh://${user !== undefined ? `${user}@` : ""}${host}${port !== undefined ? `:${port}` : ""}${path}`;
  return {
    ...(user !== undefined ? { user } : {}),
    host,
    ...(port !== undefined ? { port } : {}),
    path,
    url,
  };
}
