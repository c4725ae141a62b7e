import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { cookieValue, SESSION_COOKIE } from "./cookies.js";
import { ASSET_PREFIX, dashboardSections } from "./paths.js";
import { dashboardSchemas } from "./schemas.js";
import type { DashboardSessions } from "./sessions.js";

/**
 * Serves the built UI (`npm run build` writes it to dist/dashboard):
 *
 * - `GET /dashboard-assets/<name>`: Vite's content-hashed files, cached for a year (immutable);
 *   the name is one path segment of safe characters, so nothing outside the directory is reached;
 * - `GET /` (a redirect to /apps) and every path under a dashboard section: index.html, never
 *   stored. Anything else stays the API's (its 404 included).
 *
 * When the browser navigates a top-level window to a page (`Sec-Fetch-Mode: navigate`,
 * `Sec-Fetch-Dest: document`, headers no script can set) with a live session cookie, index.html
 * carries the session's CSRF token in `<meta name="tabbify-csrf">`: the only way a script gets it
 * besides logging in. A `fetch("/apps")` by another script on this origin gets the page without
 * it, a frame is refused by the CSP, and a window it opens is split off by
 * Cross-Origin-Opener-Policy (in a secure context: HTTPS or localhost).
 *
 * Every answer carries a CSP that allows scripts and styles from this origin only (no inline
 * script, no eval), and refuses framing.
 */

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".json": "application/json",
};

const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$/;

const CSRF_META = /<meta name="tabbify-csrf" content="[^"]*"\s*\/?>/;

export function registerDashboardAssets(
  app: FastifyInstance,
  assetsDir: string,
  sessions: DashboardSessions,
): void {
  const secure = (reply: FastifyReply) =>
    reply
      .header("content-security-policy", DASHBOARD_CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "same-origin")
      .header("x-frame-options", "DENY")
      .header("cross-origin-opener-policy", "same-origin");

  const page = async (req: FastifyRequest, reply: FastifyReply) => {
    secure(reply)
      .header("cache-control", "no-store")
      .header("vary", "cookie, sec-fetch-mode, sec-fetch-dest");
    let html: string;
    try {
      html = await readFile(join(assetsDir, "index.html"), "utf8");
    } catch {
      return reply
        .status(503)
        .type("text/plain; charset=utf-8")
        .send("The dashboard is not built on this node: run `npm run build`, then reload.\n");
    }
    const token = pageToken(req, sessions);
    if (token) html = html.replace(CSRF_META, `<meta name="tabbify-csrf" content="${token}" />`);
    return reply.type("text/html; charset=utf-8").send(html);
  };
  // The cookie is not sent to `/` (see cookies.ts), so the front door sends the browser on.
  app.get("/", { schema: dashboardSchemas.page }, async (_req, reply) =>
    secure(reply).header("cache-control", "no-cache").redirect("/apps", 302),
  );
  for (const section of dashboardSections) {
    app.get(`/${section}`, { schema: dashboardSchemas.page }, page);
    app.get(`/${section}/*`, { schema: dashboardSchemas.page }, page);
  }

  const assetDir = join(assetsDir, ASSET_PREFIX);
  app.get(`${ASSET_PREFIX}*`, { schema: dashboardSchemas.page }, async (req, reply) => {
    const name = (req.params as { "*": string })["*"];
    const type = CONTENT_TYPES[extname(name)];
    const notFound = () => reply.status(404).send({ error: "no such dashboard asset", code: "NOT_FOUND" });
    if (!ASSET_NAME.test(name) || type === undefined) return notFound();
    const path = join(assetDir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) return notFound();
    secure(reply)
      .header("cache-control", "public, max-age=31536000, immutable")
      .header("content-length", info.size)
      .type(type);
    return reply.send(createReadStream(path));
  });
}

/** The session's CSRF token, for a top-level navigation carrying a live session cookie only. */
function pageToken(req: FastifyRequest, sessions: DashboardSessions): string | undefined {
  if (req.headers["sec-fetch-mode"] !== "navigate" || req.headers["sec-fetch-dest"] !== "document") {
    return undefined;
  }
  const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
  if (!id || !sessions.find(id)) return undefined;
  return sessions.csrfTokenFor(id);
}
