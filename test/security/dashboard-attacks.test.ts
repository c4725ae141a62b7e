// Attacks on the dashboard's surface: its login and session cookie, CSRF on writes the cookie
// carries, another tenant's apps by URL, the CSP, and the asset server's paths.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { type McpNode, startMcpNode } from "../support/mcp-node.js";

interface Login {
  cookie: string;
  csrf: string;
  setCookie: string;
  body: string;
}

describe("dashboard attacks", () => {
  let up: McpNode;
  let url: string;
  before(async () => {
    up = await startMcpNode();
    url = up.node.url;
  });
  after(async () => up?.node.close());

  async function login(token: string, headers: Record<string, string> = {}): Promise<Login> {
    const res = await fetch(`${url}/api/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ token }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    const setCookie = res.headers.get("set-cookie") ?? "";
    return {
      cookie: setCookie.split(";")[0]!,
      csrf: (JSON.parse(body) as { csrf_token: string }).csrf_token,
      setCookie,
      body,
    };
  }

  /** Raw HTTP, so `..` and encoded slashes reach the server exactly as written. */
  function rawGet(
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${url}/`, { method: "GET", path, headers }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  it("the session cookie is HttpOnly, SameSite=Strict, scoped to the API and page paths, and carries no token", async () => {
    const s = await login(up.acmeToken);
    const cookies = s.setCookie.split(/, (?=tabbify_session=)/);
    const paths = cookies.map((c) => /; Path=([^;]+)/.exec(c)?.[1]);
    assert.ok(paths.includes("/api") && paths.includes("/v1") && paths.includes("/apps"), paths.join(" "));
    for (const [i, c] of cookies.entries()) {
      assert.match(c, /^tabbify_session=[A-Za-z0-9_-]{40,};/);
      assert.match(c, /; HttpOnly/);
      assert.match(c, /; SameSite=Strict/);
      assert.doesNotMatch(c, /; Secure/, "plain http: a Secure cookie would never come back");
      // Never `/` nor a prefix of `/app/`: the browser must not send it to the apps.
      assert.ok(paths[i] !== "/" && !"/app/x".startsWith(paths[i] ?? "/"), `path ${paths[i]}`);
    }
    assert.ok(!s.setCookie.includes(up.acmeToken) && !s.body.includes(up.acmeToken), "token echoed");
    const me = await fetch(`${url}/api/dashboard/session`, {
      headers: { cookie: s.cookie, "x-csrf-token": s.csrf },
    });
    const text = await me.text();
    assert.equal(me.status, 200);
    assert.ok(!text.includes(up.acmeToken), "the session answer gives the token back");
    assert.ok(!text.includes(s.csrf), "the session answer gives the page's token out");
    assert.deepEqual(JSON.parse(text).tenant, "acme");
  });

  it("the cookie without the page's token reads nothing: only a top-level navigation gets the token", async () => {
    const s = await login(up.acmeToken);
    const bare = await fetch(`${url}/api/v1/apps`, { headers: { cookie: s.cookie } });
    assert.equal(bare.status, 401, "a script's fetch with the cookie alone");
    const me = await fetch(`${url}/api/dashboard/session`, { headers: { cookie: s.cookie } });
    assert.equal(me.status, 401);
    assert.equal(((await me.json()) as { code: string }).code, "SESSION_NEEDS_PAGE");
    // Raw HTTP: fetch() sets its own Sec-Fetch-* headers, as a browser's script does.
    const page = async (headers: Record<string, string>) =>
      (await rawGet("/apps", { cookie: s.cookie, ...headers })).body;
    // What fetch("/apps") and an <iframe> send: no token in the page.
    for (const h of [
      {} as Record<string, string>,
      { "sec-fetch-mode": "cors", "sec-fetch-dest": "empty" },
      { "sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe" },
    ]) {
      assert.ok(!(await page(h)).includes(s.csrf), JSON.stringify(h));
    }
    const navigated = await page({ "sec-fetch-mode": "navigate", "sec-fetch-dest": "document" });
    assert.ok(navigated.includes(`<meta name="tabbify-csrf" content="${s.csrf}"`), "a navigation gets it");
    const ok = await fetch(`${url}/api/v1/apps`, { headers: { cookie: s.cookie, "x-csrf-token": s.csrf } });
    assert.equal(ok.status, 200);
  });

  it("a wrong token, a forged JWT or a non-JSON body logs nobody in", async () => {
    for (const token of ["nope", `${up.acmeToken.slice(0, -4)}AAAA`, `${up.nodeKey}x`]) {
      const res = await fetch(`${url}/api/dashboard/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token }),
      });
      assert.equal(res.status, 401, token.slice(0, 12));
      assert.equal(res.headers.get("set-cookie"), null);
      assert.ok(!(await res.text()).includes(token), "the refusal echoes the token");
    }
    // What a cross-site <form> can send: no JSON content type.
    const form = await fetch(`${url}/api/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `token=${encodeURIComponent(up.nodeKey)}`,
    });
    assert.ok(form.status === 400 || form.status === 415, `form login answered ${form.status}`);
    assert.equal(form.headers.get("set-cookie"), null);
  });

  it("a login posted from another origin is refused", async () => {
    const res = await fetch(`${url}/api/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: "https://evil.example" },
      body: JSON.stringify({ token: up.nodeKey }),
    });
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("set-cookie"), null);
  });

  it("a write carried by the cookie without the CSRF token, or with a wrong one, is refused and changes nothing", async () => {
    const s = await login(up.nodeKey);
    const description = async () =>
      (
        (await (
          await fetch(`${url}/api/v1/apps/acme-web`, { headers: { authorization: `Bearer ${up.nodeKey}` } })
        ).json()) as { description: string }
      ).description;
    const before = await description();
    // One character off (never the same one: a token may already end in "A").
    const offByOne = `${s.csrf.slice(0, -1)}${s.csrf.endsWith("A") ? "B" : "A"}`;
    for (const csrf of [undefined, "", "x".repeat(43), offByOne]) {
      const res = await fetch(`${url}/api/v1/apps/acme-web`, {
        method: "PATCH",
        headers: {
          cookie: s.cookie,
          "content-type": "application/json",
          ...(csrf !== undefined ? { "x-csrf-token": csrf } : {}),
        },
        body: JSON.stringify({ description: "csrf was here" }),
      });
      assert.equal(res.status, 403, `csrf ${JSON.stringify(csrf)}`);
      assert.equal(((await res.json()) as { code: string }).code, "CSRF_INVALID");
    }
    assert.equal(await description(), before);
    // Another session's token does not fit this session.
    const other = await login(up.nodeKey);
    const crossed = await fetch(`${url}/api/v1/apps/acme-web`, {
      method: "PATCH",
      headers: { cookie: s.cookie, "content-type": "application/json", "x-csrf-token": other.csrf },
      body: JSON.stringify({ description: "csrf was here" }),
    });
    assert.equal(crossed.status, 403);
    // Logout is a write too.
    const out = await fetch(`${url}/api/dashboard/logout`, { method: "POST", headers: { cookie: s.cookie } });
    assert.equal(out.status, 403);
    assert.equal(
      (await fetch(`${url}/api/dashboard/session`, { headers: { cookie: s.cookie, "x-csrf-token": s.csrf } }))
        .status,
      200,
    );
    // With the right token the same write goes through: the refusals above were the CSRF check.
    const ok = await fetch(`${url}/api/v1/apps/acme-web`, {
      method: "PATCH",
      headers: { cookie: s.cookie, "content-type": "application/json", "x-csrf-token": s.csrf },
      body: JSON.stringify({ description: "set from the dashboard" }),
    });
    assert.equal(ok.status, 200, await ok.text());
    assert.equal(await description(), "set from the dashboard");
  });

  it("after logout the cookie opens nothing", async () => {
    const s = await login(up.nodeKey);
    const out = await fetch(`${url}/api/dashboard/logout`, {
      method: "POST",
      headers: { cookie: s.cookie, "x-csrf-token": s.csrf },
    });
    assert.equal(out.status, 204);
    assert.match(out.headers.get("set-cookie") ?? "", /Max-Age=0/);
    const withToken = { cookie: s.cookie, "x-csrf-token": s.csrf };
    assert.equal((await fetch(`${url}/api/v1/apps`, { headers: withToken })).status, 401);
    assert.equal((await fetch(`${url}/api/dashboard/session`, { headers: withToken })).status, 401);
  });

  it("a tenant's session reaches only its own apps, whatever URL it asks", async () => {
    const s = await login(up.acmeToken);
    const get = (path: string) =>
      fetch(`${url}${path}`, { headers: { cookie: s.cookie, "x-csrf-token": s.csrf } });
    const list = (await (await get("/api/v1/apps")).json()) as { apps: { name: string }[] };
    assert.deepEqual(
      list.apps.map((a) => a.name),
      ["acme-web"],
    );
    for (const path of [
      "/api/v1/apps/other-web",
      "/api/v1/apps/other-web/deploys",
      "/api/v1/apps/other-web/environments",
      "/api/v1/apps/other-web/env",
      "/api/v1/apps/other-web/releases",
      "/api/v1/apps/other-web/deploys/latest/log",
    ]) {
      const res = await get(path);
      assert.equal(res.status, 404, `${path} answered ${res.status}`);
      await res.body?.cancel();
    }
    // Node-key routes stay closed to a tenant's cookie.
    for (const path of [
      "/api/v1/audit",
      "/v1/audit/events",
      "/v1/audit/verify",
      "/v1/topology",
      "/v1/deploys",
      "/api/v1/registry/export",
    ]) {
      const res = await get(path);
      assert.ok(res.status === 401 || res.status === 403, `${path} answered ${res.status}`);
      await res.body?.cancel();
    }
    // A bearer header wins over the cookie: a node-key cookie cannot widen a tenant's bearer.
    const admin = await login(up.nodeKey);
    const mixed = await fetch(`${url}/api/v1/apps/other-web`, {
      headers: { cookie: admin.cookie, authorization: `Bearer ${up.acmeToken}` },
    });
    assert.equal(mixed.status, 404);
  });

  it("every dashboard page and asset carries the CSP; index.html is never cached, assets are immutable", async () => {
    const front = await fetch(`${url}/`, { redirect: "manual" });
    assert.equal(front.status, 302);
    assert.equal(front.headers.get("location"), "/apps");
    for (const path of ["/login", "/apps", "/apps/acme-web", "/apps/acme-web/deploys/x", "/device"]) {
      const res = await fetch(`${url}${path}`);
      const body = await res.text();
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
      const csp = res.headers.get("content-security-policy") ?? "";
      assert.match(csp, /script-src 'self'(;|$)/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/, path);
      assert.equal(res.headers.get("cache-control"), "no-store", path);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.doesNotMatch(body, /<script(?![^>]*\bsrc=)[^>]*>/, "an inline script");
    }
    const html = await (await fetch(`${url}/apps`)).text();
    const asset = /src="(\/dashboard-assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, "index.html names its script");
    const res = await fetch(`${url}${asset}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("cache-control") ?? "", /immutable/);
    assert.match(res.headers.get("content-type") ?? "", /^text\/javascript/);
    await res.body?.cancel();
  });

  it("the asset server reaches nothing outside its directory, and API paths are not shadowed", async () => {
    for (const path of [
      "/dashboard-assets/../index.html",
      "/dashboard-assets/..%2f..%2fpackage.json",
      "/dashboard-assets/%2e%2e/%2e%2e/package.json",
      "/dashboard-assets/..%5c..%5cpackage.json",
      "/dashboard-assets/....//....//etc/passwd",
      "/dashboard-assets/%2fetc%2fpasswd",
      "/dashboard-assets/index.html",
      "/dashboard-assets/.hidden.js",
      "/dashboard-assets/x.js%00.css",
      "/apps/../../../../etc/passwd",
      "/dashboard-assets/../../src/dashboard/sessions.js",
    ]) {
      const res = await rawGet(path);
      assert.ok(
        res.status === 404 ||
          res.status === 400 ||
          (res.status === 200 && res.body.startsWith("<!doctype html>")),
        `${path} answered ${res.status}: ${res.body.slice(0, 80)}`,
      );
      assert.doesNotMatch(res.body, /root:|"name": "tabbify"|DashboardSessions/, path);
    }
    // The API keeps its own answers (and its 404) next to the dashboard's pages.
    assert.equal((await rawGet("/v1/apps")).status, 401);
    assert.equal((await rawGet("/openapi.json")).status, 200);
    const unknown = await rawGet("/v1/nothing-here");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body, /NOT_FOUND/);
  });
});
