import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { CallerResolver } from "../node/apps-identity.js";
import { cookieValue, SESSION_COOKIE, sessionCookies } from "./cookies.js";
import { LoginLimit } from "./login-limit.js";
import { SESSION_API } from "./paths.js";
import { dashboardSchemas } from "./schemas.js";
import type { DashboardSessions } from "./sessions.js";

/**
 * The dashboard's login, logout and session routes, and the hook that lets the session cookie
 * stand in for a bearer token on the node's whole API:
 *
 * - a request with an `Authorization` header is left alone (the cookie is ignored);
 * - a request with a live session cookie AND the session's token in `x-csrf-token` gets
 *   `Authorization: Bearer <the session's credential>`, so every route checks and scopes it
 *   exactly as it does `tcli`'s (a tenant sees its own apps);
 * - a GET or HEAD with the cookie but without that token acts as nobody (the API answers 401), so
 *   a script on this origin that is not the dashboard's (an app's page under `/app/`) cannot read
 *   through the session; a POST, PUT, PATCH or DELETE without it is refused (403 CSRF_INVALID)
 *   before any handler runs.
 *
 * The token reaches the dashboard's script only in the login answer and in the index.html of a
 * top-level navigation (see assets.ts), never in an answer a script can fetch.
 */

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export interface SessionRoutesOptions {
  sessions: DashboardSessions;
  callers: CallerResolver;
  loginLimit?: LoginLimit;
}

export function registerSessionRoutes(app: FastifyInstance, opts: SessionRoutesOptions): void {
  const { sessions, callers } = opts;
  const limit = opts.loginLimit ?? new LoginLimit();

  app.addHook("onRequest", async (req: FastifyRequest) => {
    if (req.headers.authorization !== undefined) return;
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    const session = sessions.find(id);
    if (!id || !session) return;
    if (!sessions.csrfMatches(id, header(req, "x-csrf-token"))) {
      if (SAFE_METHODS.has(req.method)) return;
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
    const wait = limit.retryAfter(req.ip, token);
    if (wait > 0) {
      void reply.header("retry-after", String(wait));
      throw new TabbifyError("TOO_MANY_ATTEMPTS", `too many failed logins: try again in ${wait} s`);
    }
    let caller: { actor: string; tenant?: string };
    try {
      caller = await callers.resolve(`Bearer ${token.trim()}`);
    } catch (err) {
      if (err instanceof TabbifyError && err.code === "UNAUTHORIZED") {
        limit.failed(req.ip, token);
        throw new TabbifyError("UNAUTHORIZED", "that is neither this node's key nor a valid tenant token");
      }
      throw err;
    }
    limit.succeeded(req.ip);
    const old = cookieValue(req.headers.cookie, SESSION_COOKIE);
    sessions.end(old);
    const tenant = caller.tenant ?? null;
    const id = sessions.create({ token: token.trim(), actor: caller.actor, tenant });
    setCookie(reply, sessionCookies(id, Math.floor(sessions.ttlMs / 1000), req.protocol === "https"));
    return { actor: caller.actor, tenant, csrf_token: sessions.csrfTokenFor(id) };
  });

  app.post(`${SESSION_API}/logout`, { schema: dashboardSchemas.logout }, async (req, reply) => {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    // The hook has already checked the CSRF token of a live session; a dead one has nothing to end.
    if (!sessions.find(id)) throw new TabbifyError("UNAUTHORIZED", "no dashboard session to end");
    sessions.end(id);
    setCookie(reply, sessionCookies("", 0, req.protocol === "https"));
    return reply.status(204).send();
  });

  app.get(`${SESSION_API}/session`, { schema: dashboardSchemas.session }, async (req, reply) => {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    const session = sessions.find(id);
    if (!id || !session) throw new TabbifyError("UNAUTHORIZED", "not logged in to the dashboard");
    if (!sessions.csrfMatches(id, header(req, "x-csrf-token"))) {
      // A live cookie without the page's token: the dashboard reloads its page to get it; any
      // other script learns nothing more than that a session exists.
      throw new TabbifyError("SESSION_NEEDS_PAGE", "load a dashboard page to use this session");
    }
    try {
      // The token may have expired or the node key changed since login.
      await callers.resolve(`Bearer ${session.token}`);
    } catch (err) {
      sessions.end(id);
      setCookie(reply, sessionCookies("", 0, req.protocol === "https"));
      throw err;
    }
    void reply.header("cache-control", "no-store");
    return { actor: session.actor, tenant: session.tenant };
  });
}

function header(req: FastifyRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function setCookie(reply: FastifyReply, cookies: string[]): void {
  void reply.header("set-cookie", cookies).header("cache-control", "no-store");
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
