import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import {
  assertAccessible,
  fetchAsDashboard,
  launchChromium,
  logIn,
  newPage,
  screenshots,
} from "./support/browser.js";
import { type McpNode, startMcpNode } from "./support/mcp-node.js";

describe("the dashboard's login, in chromium", () => {
  let up: McpNode;
  let browser: Browser;
  before(async () => {
    up = await startMcpNode();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await up?.node.close();
  });

  it("sends a stranger to the login page, which passes axe", async () => {
    const { context, page, consoleErrors } = await newPage(browser, up.node.url);
    try {
      await page.goto("/apps");
      await page.waitForURL(/\/login\?next=%2Fapps$/);
      await page.getByRole("heading", { name: "Log in" }).waitFor();
      await assertAccessible(page, "login");
      await screenshots(page, "login");
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
        "no CSP or script errors",
      );
    } finally {
      await context.close();
    }
  });

  it("refuses a wrong token with a message, and sets no cookie", async () => {
    const { context, page } = await newPage(browser, up.node.url);
    try {
      await page.goto("/login");
      await page.getByLabel("Node key or tenant token").fill("not-the-key");
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByRole("alert").filter({ hasText: "neither this node's key" }).waitFor();
      assert.deepEqual(await context.cookies(), []);
    } finally {
      await context.close();
    }
  });

  it("logs a tenant in: it sees its own app and not the other tenant's, and logs out", async () => {
    const { context, page } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.acmeToken);
      await page.getByRole("link", { name: "acme-web" }).waitFor();
      assert.equal(await page.getByText("other-web").count(), 0);
      const [cookie] = await context.cookies();
      assert.equal(cookie?.name, "tabbify_session");
      assert.equal(cookie?.httpOnly, true);
      assert.equal(cookie?.sameSite, "Strict");
      assert.notEqual(cookie?.value, up.acmeToken);
      await assertAccessible(page, "apps");
      await screenshots(page, "apps-tenant");
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(/\/login/);
      const res = await page.request.get("/api/v1/apps");
      assert.equal(res.status(), 401, "the cookie no longer opens the API");
    } finally {
      await context.close();
    }
  });

  it("another tenant's app, its deploys and its logs are not reachable by URL", async () => {
    const { context, page } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.acmeToken);
      for (const path of [
        "/apps/other-web",
        "/apps/other-web/deploys/00000000-0000-0000-0000-000000000000",
      ]) {
        await page.goto(path);
        await page.getByRole("alert").waitFor();
        assert.match(
          await page.getByRole("alert").innerText(),
          /not in the registry|not found|no deploy|unknown/i,
          path,
        );
        assert.equal(await page.getByRole("button", { name: "Restart" }).count(), 0, path);
      }
      const logs = await fetchAsDashboard(page, "/api/v1/apps/other-web/logs?tail=10");
      assert.equal(logs.status, 404, logs.text);
      await page.goto("/apps/acme-web");
      await page.getByRole("heading", { name: "acme-web" }).waitFor();
      await assertAccessible(page, "app (never deployed)");
    } finally {
      await context.close();
    }
  });
});
