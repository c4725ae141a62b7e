/**
 * A repository URL this platform will clone: http(s) only. A file:// or ext:: remote would let a
 * caller read or run things on the host that clones it. Returns the URL, or why it is refused
 * (a message naming `repo_url`, the field both APIs take).
 */
export function parseHttpRepoUrl(raw: string): { url: URL } | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: "repo_url is not a URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { problem: `repo_url must be an http(s) URL, not ${url.protocol}` };
  }
  return { url };
}
