import { dashboardSections } from "./paths.js";

/** The session cookie's name; the app proxy strips it from requests it forwards to apps. */
export const SESSION_COOKIE = "tabbify_session";

/** One cookie's value from a `Cookie` header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A `Cookie` header without `name`; undefined when nothing is left. */
export function withoutCookie(header: string, name: string): string | undefined {
  const kept = header
    .split(";")
    .map((p) => p.trim())
    .filter((p) => p !== "" && p.slice(0, p.indexOf("=") < 0 ? p.length : p.indexOf("=")).trim() !== name);
  return kept.length > 0 ? kept.join("; ") : undefined;
}

/**
 * The paths the session cookie is scoped to: the APIs the dashboard calls and its own pages. Not
 * `/`: a browser then never sends the cookie to `/app/<uuid>/`, whichever engine serves the apps.
 */
export const SESSION_COOKIE_PATHS: readonly string[] = [
  "/api",
  "/v1",
  ...dashboardSections.map((s) => `/${s}`),
];

/**
 * The session cookie, one `Set-Cookie` per path of SESSION_COOKIE_PATHS: HttpOnly,
 * SameSite=Strict, Secure when the request came over TLS.
 */
export function sessionCookies(value: string, maxAgeSecs: number, secure: boolean): string[] {
  return SESSION_COOKIE_PATHS.map((path) =>
    [
      `${SESSION_COOKIE}=${value}`,
      `Path=${path}`,
      "HttpOnly",
      "SameSite=Strict",
      `Max-Age=${maxAgeSecs}`,
      ...(secure ? ["Secure"] : []),
    ].join("; "),
  );
}
