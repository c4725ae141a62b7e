import { NodeClient } from "../../node/client.js";

export { TabbifyError } from "../../core/errors.js";

/**
 * The UI's way to the node's API: the same typed clients `tcli` uses (src/node/client.ts and the
 * typed functions over it beside it: views-client.ts, review-client.ts, releases-client.ts), on this origin, with one difference in how
 * they authenticate. The browser carries the session cookie (HttpOnly, so never read here) and
 * this module adds the session's token (`x-csrf-token`) to every request: the node lets the cookie
 * act only together with it. The token comes from the page itself (`<meta name="tabbify-csrf">`,
 * which the node fills in only for a top-level navigation) or from the login answer.
 */

let csrfToken = document.querySelector<HTMLMetaElement>('meta[name="tabbify-csrf"]')?.content ?? "";

/** The token this page holds ("" for none). */
export function csrfTokenNow(): string {
  return csrfToken;
}

/** Set from the login answer; sent as `x-csrf-token` on every request. */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** fetch for the clients: same-origin credentials, the session token, and a 401 told to the session. */
async function sessionFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (csrfToken) headers.set("x-csrf-token", csrfToken);
  const res = await fetch(input, { ...init, headers, credentials: "same-origin" });
  if (res.status === 401) {
    const code = await res
      .clone()
      .json()
      .then((b: { code?: string }) => b.code)
      .catch(() => undefined);
    // SESSION_NEEDS_PAGE: the session lives, this page only lacks its token (session.tsx reloads).
    if (code !== "SESSION_NEEDS_PAGE") window.dispatchEvent(new CustomEvent("tabbify:unauthorized"));
  }
  return res;
}

/** The node's API client, as `tcli` has it. */
export const node = new NodeClient({ url: location.origin, fetch: sessionFetch });

/** A text stream (logs, deploy events) one line at a time, until it ends or `signal` aborts. */
export async function streamLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  signal: AbortSignal,
): Promise<void> {
  // The DOM's TextDecoderStream types its writable side as BufferSource; bytes are what it takes.
  const reader = stream
    .pipeThrough(new TextDecoderStream() as ReadableWritablePair<string, Uint8Array>)
    .getReader();
  const stop = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", stop, { once: true });
  try {
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      const lines = rest.split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) onLine(line);
    }
    if (rest) onLine(rest);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
