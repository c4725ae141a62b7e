import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { ASSET_PREFIX, dashboardSections } from "./paths.js";
import { dashboardSchemas } from "./schemas.js";

/**
 * Serves the built UI (`npm run build` writes it to dist/dashboard):
 *
 * - `GET /dashboard-assets/<name>`: Vite's content-hashed files, cached for a year (immutable);
 *   the name is one path segment of safe characters, so nothing outside the directory is reached;
 * - `GET /` and every path under a dashboard section: index.html, never cached, so a new build
 *   is picked up on the next load. Anything else stays the API's (its 404 included).
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

export function registerDashboardAssets(app: FastifyInstance, assetsDir: string): void {
  const secure = (reply: FastifyReply) =>
    reply
      .header("content-security-policy", DASHBOARD_CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "same-origin")
      .header("x-frame-options", "DENY")
      .header("cross-origin-opener-policy", "same-origin");

  const page = async (_req: unknown, reply: FastifyReply) => {
    secure(reply).header("cache-control", "no-cache");
    let html: Buffer;
    try {
      html = await readFile(join(assetsDir, "index.html"));
    } catch {
      return reply
        .status(503)
        .type("text/plain; charset=utf-8")
        .send("The dashboard is not built on this node: run `npm run build`, then reload.\n");
    }
    return reply.type("text/html; charset=utf-8").send(html);
  };
  app.get("/", { schema: dashboardSchemas.page }, page);
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
