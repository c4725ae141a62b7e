import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { CallerResolver } from "../node/apps-identity.js";
import { cookieValue, SESSION_COOKIE, sessionCookie } from "./cookies.js";
import { SESSION_API } from "./paths.js";
import { dashboardSchemas } from "./schemas.js";
import type { DashboardSessions } from "./sessions.js";

/**
 * The dashboard's login, logout and session routes, and the hook that lets the session cookie
 * stand in for a bearer token on the node's whole API:
 *
 * - a request with an `Authorization` header is left alone (the cookie is ignored);
 * - a request with a live session cookie gets `Authorization: Bearer <the session's token>`, so
 *   every route checks and scopes it exactly as it does `tcli`'s (a tenant sees its own apps);
 * - a POST, PUT, PATCH or DELETE carried by the cookie must bring the session's CSRF token in
 *   `x-csrf-token`, or it is refused (403 CSRF_INVALID) before any handler runs.
 */

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export interface SessionRoutesOptions {
  sessions: DashboardSessions;
  callers: CallerResolver;
}

export function registerSessionRoutes(app: FastifyInstance, opts: SessionRoutesOptions): void {
  const { sessions, callers } = opts;

  app.addHook("onRequest", async (req: FastifyRequest) => {
    if (req.headers.authorization !== undefined) return;
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    const session = sessions.find(id);
    if (!id || !session) return;
    if (!SAFE_METHODS.has(req.method) && !sessions.csrfMatches(id, header(req, "x-csrf-token"))) {
      throw new TabbifyError(
        "CSRF_INVALID",
        "this request rides the dashboard's session cookie without its CSRF token (x-csrf-token)",
      );
    }
    req.headers.authorization = `Bearer ${session.token}`;
  });

  app.post(`${SESSION_API}/login`, { schema: dashboardSchemas.login }, async (req, reply) => {
    refuseForeignOrigin(req);
    const { token } = req.body as { token: string };
    let caller: { actor: string; tenant?: string };
    try {
      caller = await callers.resolve(`Bearer ${token.trim()}`);
    } catch (err) {
      if (err instanceof TabbifyError && err.code === "UNAUTHORIZED") {
        throw new TabbifyError("UNAUTHORIZED", "that is neither this node's key nor a valid tenant token");
      }
      throw err;
    }
    const old = cookieValue(req.headers.cookie, SESSION_COOKIE);
    sessions.end(old);
    const tenant = caller.tenant ?? null;
    const id = sessions.create({ token: token.trim(), actor: caller.actor, tenant });
    setCookie(reply, sessionCookie(id, Math.floor(sessions.ttlMs / 1000), req.protocol === "https"));
    return { actor: caller.actor, tenant, csrf_token: sessions.csrfTokenFor(id) };
  });

  app.post(`${SESSION_API}/logout`, { schema: dashboardSchemas.logout }, async (req, reply) => {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    // The hook has already checked the CSRF token of a live session; a dead one has nothing to end.
    if (!sessions.find(id)) throw new TabbifyError("UNAUTHORIZED", "no dashboard session to end");
    sessions.end(id);
    setCookie(reply, sessionCookie("", 0, req.protocol === "https"));
    return reply.status(204).send();
  });

  app.get(`${SESSION_API}/session`, { schema: dashboardSchemas.session }, async (req, reply) => {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    const session = sessions.find(id);
    if (!id || !session) throw new TabbifyError("UNAUTHORIZED", "not logged in to the dashboard");
    try {
      // The token may have expired or the node key changed since login.
      await callers.resolve(`Bearer ${session.token}`);
    } catch (err) {
      sessions.end(id);
      setCookie(reply, sessionCookie("", 0, req.protocol === "https"));
      throw err;
    }
    void reply.header("cache-control", "no-store");
    return { actor: session.actor, tenant: session.tenant, csrf_token: sessions.csrfTokenFor(id) };
  });
}

function header(req: FastifyRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function setCookie(reply: FastifyReply, cookie: string): void {
  void reply.header("set-cookie", cookie).header("cache-control", "no-store");
}

/**
 * Login needs no cookie, so SameSite cannot guard it: a page elsewhere could log a visitor in as
 * the attacker. A browser's cross-origin POST carries Origin; refuse one that names another host.
 */
function refuseForeignOrigin(req: FastifyRequest): void {
  const origin = header(req, "origin");
  if (origin === undefined) return;
  let host = "";
  try {
    host = new URL(origin).host;
  } catch {
    host = "";
  }
  if (host !== req.host) {
    throw new TabbifyError("CSRF_INVALID", `a login from another origin (${origin}) is refused`);
  }
}
