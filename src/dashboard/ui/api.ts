/**
 * The UI's one way to the node's API: same origin, the session cookie (HttpOnly, so never read
 * here) and, on every request, the session's token (`x-csrf-token`): the node lets the cookie act
 * only together with it. The token comes from the page itself (`<meta name="tabbify-csrf">`, which
 * the node fills in only for a top-level navigation) or from the login answer.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken = document.querySelector<HTMLMetaElement>('meta[name="tabbify-csrf"]')?.content ?? "";

/** The token this page holds ("" for none). */
export function csrfTokenNow(): string {
  return csrfToken;
}

/** Set from the login answer; sent as `x-csrf-token` on every request. */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: unknown;
  signal?: AbortSignal;
}

function init(opts: RequestOptions): RequestInit {
  const method = opts.method ?? "GET";
  const headers: Record<string, string> = { accept: "application/json" };
  if (csrfToken) headers["x-csrf-token"] = csrfToken;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  return {
    method,
    headers,
    credentials: "same-origin",
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
}

async function failure(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: string; code?: string; error_description?: string };
    code = body.code ?? code;
    message = body.error_description ?? body.error ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  // SESSION_NEEDS_PAGE: the session lives, this page just lacks its token (session.tsx reloads).
  if (res.status === 401 && code !== "SESSION_NEEDS_PAGE")
    window.dispatchEvent(new CustomEvent("tabbify:unauthorized"));
  return new ApiError(res.status, code, message);
}

/** A JSON request; throws ApiError with the node's `{error, code}` on anything but 2xx. */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await fetch(path, init(opts));
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** A streamed text response, one line at a time, until it ends or `signal` aborts. */
export async function streamLines(
  path: string,
  onLine: (line: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const base = init({ signal });
  const res = await fetch(path, {
    ...base,
    headers: { ...(base.headers as Record<string, string>), accept: "text/plain" },
  });
  if (!res.ok || !res.body) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
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
}
