// Attacks on the dashboard session from the apps' side of the origin, and on its login by volume:
// an app's page (served by the node under /app/<uuid>/, the dashboard's own origin) tries every
// way its script has to use a logged-in session, in a real chromium; and guessing at the login
// form meets 429 with Retry-After per client address and per credential.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium, logIn, newPage } from "../support/browser.js";
import { listenAsApp } from "../support/local-apps.js";
import { type McpNode, startMcpNode } from "../support/mcp-node.js";

/** What the app's page script tries; it posts what it got to its own /report. */
const EVIL_PAGE = `<!doctype html><html><head><title>app</title></head><body><p>an app</p><script>
(async () => {
  const out = {};
  const tryIt = async (name, fn) => { try { out[name] = await fn(); } catch (e) { out[name] = "threw " + e.name; } };
  await tryIt("apps", async () => (await fetch("/api/v1/apps", { credentials: "include" })).status);
  await tryIt("session", async () => { const r = await fetch("/api/dashboard/session"); return r.status + " " + (await r.text()); });
  await tryIt("topology", async () => (await fetch("/v1/topology")).status);
  await tryIt("page", async () => {
    const html = await (await fetch("/apps")).text();
    return /name="tabbify-csrf" content="([^"]+)"/.exec(html)?.[1] ?? "";
  });
  await tryIt("write", async () => (await fetch("/api/v1/apps/acme-web", {
    method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ description: "owned by an app" }),
  })).status);
  await tryIt("logout", async () => (await fetch("/api/dashboard/logout", { method: "POST" })).status);
  await tryIt("frame", () => new Promise((resolve) => {
    const f = document.createElement("iframe");
    f.src = "/apps";
    f.onload = () => { try { resolve(f.contentDocument?.querySelector('meta[name="tabbify-csrf"]')?.content ?? "no document"); } catch (e) { resolve("threw " + e.name); } };
    document.body.appendChild(f);
    setTimeout(() => resolve("no load"), 5000);
  }));
  await tryIt("popup", async () => {
    const w = window.open("/apps", "_blank");
    if (!w) return "no window";
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        const token = w.document.querySelector('meta[name="tabbify-csrf"]')?.content;
        if (token) return token;
      } catch (e) { return "threw " + e.name; }
      if (w.closed) return "closed";
    }
    return "nothing";
  });
  await tryIt("cookie", () => document.cookie);
  await fetch("report", { method: "POST", body: JSON.stringify(out) });
})();
</script></body></html>`;

describe("dashboard session scope", () => {
  let up: McpNode;
  let url: string;
  let browser: Browser;
  let app: http.Server;
  let appUuid: string;
  const cookiesSeenByApp: string[] = [];
  let report: (r: Record<string, unknown>) => void;
  const reported = new Promise<Record<string, unknown>>((resolve) => (report = resolve));

  before(async () => {
    up = await startMcpNode();
    url = up.node.url;
    const res = await fetch(`${url}/api/v1/apps/acme-web`, {
      headers: { authorization: `Bearer ${up.nodeKey}` },
    });
    appUuid = ((await res.json()) as { uuid: string }).uuid;
    app = http.createServer((req, res) => {
      cookiesSeenByApp.push(req.headers.cookie ?? "");
      if (req.method === "POST" && req.url?.endsWith("/report")) {
        let body = "";
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => {
          report(JSON.parse(body) as Record<string, unknown>);
          res.end("ok");
        });
        return;
      }
      res.setHeader("content-type", "text/html; charset=utf-8");
      res.end(EVIL_PAGE);
    });
    await listenAsApp(app, appUuid);
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => (app ? app.close(r) : r(undefined)));
    await up?.node.close();
  });

  it("an app's page cannot read or write through a logged-in dashboard session, nor learn its token", async () => {
    const { context, page } = await newPage(browser, url);
    try {
      await logIn(page, up.nodeKey);
      // The session works for the dashboard itself…
      await page.goto("/apps");
      await page.getByRole("link", { name: "acme-web" }).first().waitFor();
      const token = await page.locator('meta[name="tabbify-csrf"]').getAttribute("content");
      assert.ok(token, "the dashboard page carries its session token");
      // …then the same browser opens an app.
      await page.goto(`/app/${appUuid}/`);
      const got = await Promise.race([
        reported,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("the app never reported")), 60_000),
        ),
      ]);
      assert.equal(got.apps, 401, "a read with the cookie alone acts as nobody");
      assert.match(String(got.session), /^401 .*SESSION_NEEDS_PAGE/);
      assert.ok(!String(got.session).includes(token), "the session answer hands out the token");
      assert.equal(got.topology, 401);
      assert.equal(got.page, "", "a fetched page carries no token");
      assert.equal(got.write, 403, "a write with the cookie alone is refused");
      assert.equal(got.logout, 403);
      assert.ok(got.frame !== token, `the frame gave the token away: ${got.frame}`);
      assert.ok(got.popup !== token, `the popup gave the token away: ${got.popup}`);
      assert.equal(got.cookie, "", "the app's script sees no dashboard cookie");
      assert.ok(
        cookiesSeenByApp.every((c) => !c.includes("tabbify_session")),
        `the session cookie reached the app: ${cookiesSeenByApp.join(" | ")}`,
      );
      const record = await fetch(`${url}/api/v1/apps/acme-web`, {
        headers: { authorization: `Bearer ${up.nodeKey}` },
      });
      assert.notEqual(((await record.json()) as { description?: string }).description, "owned by an app");
      // The session itself is intact: the dashboard still works.
      await page.goto("/apps");
      await page.getByRole("link", { name: "acme-web" }).first().waitFor();
    } finally {
      await context.close();
    }
  });
});

/** A login POST from a chosen loopback source address. */
function loginFrom(
  nodeUrl: string,
  source: string,
  token: string,
): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${nodeUrl}/api/dashboard/login`,
      { method: "POST", localAddress: source, agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => {
          const h = res.headers["retry-after"];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(h) ? h[0] : h, body });
        });
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ token }));
  });
}

describe("dashboard login rate limit", () => {
  let up: McpNode;
  before(async () => {
    up = await startMcpNode();
  });
  after(async () => up?.node.close());

  it("one address guessing gets 429 with Retry-After, even for the right key, while others log in", async () => {
    const url = up.node.url;
    for (let i = 0; i < 10; i++) {
      const r = await loginFrom(url, "127.0.0.21", `guess-${i}-${"x".repeat(20)}`);
      assert.equal(r.status, 401, `guess ${i}: ${r.body}`);
    }
    const limited = await loginFrom(url, "127.0.0.21", `guess-10-${"x".repeat(20)}`);
    assert.equal(limited.status, 429, limited.body);
    assert.match(limited.body, /TOO_MANY_ATTEMPTS/);
    const wait = Number(limited.retryAfter);
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 60, `Retry-After ${limited.retryAfter}`);
    const right = await loginFrom(url, "127.0.0.21", up.nodeKey);
    assert.equal(right.status, 429, "not even checked while limited");
    assert.ok(!right.body.includes(up.nodeKey));
    const elsewhere = await loginFrom(url, "127.0.0.22", up.nodeKey);
    assert.equal(elsewhere.status, 200, `another address is not held up: ${elsewhere.body}`);
  });

  it("guesses at one tenant's tokens spread over addresses hit the credential's own limit", async () => {
    const url = up.node.url;
    const [head, , sig] = up.acmeToken.split(".");
    const claims = JSON.parse(Buffer.from(up.acmeToken.split(".")[1]!, "base64url").toString()) as Record<
      string,
      unknown
    >;
    let n = 0;
    const forged = () =>
      `${head}.${Buffer.from(JSON.stringify({ ...claims, jti: `guess-${n++}` })).toString("base64url")}.${sig}`;
    for (let a = 0; a < 4; a++) {
      for (let i = 0; i < 8; i++) {
        const r = await loginFrom(url, `127.0.0.${31 + a}`, forged());
        assert.ok(r.status === 401 || r.status === 429, `${r.status} ${r.body}`);
      }
    }
    const fresh = await loginFrom(url, "127.0.0.41", forged());
    assert.equal(fresh.status, 429, `a new address with the same tenant's forged token: ${fresh.body}`);
    assert.ok(Number(fresh.retryAfter) >= 1);
    const other = await loginFrom(url, "127.0.0.41", up.otherToken);
    assert.equal(other.status, 200, `another tenant's token is not held up: ${other.body}`);
  });
});
