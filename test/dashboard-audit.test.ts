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

/** The audit page: the chain's rows, verified in the browser (WebCrypto) and by the node. */
describe("the dashboard's audit page, in chromium", () => {
  let up: McpNode;
  let browser: Browser;
  before(async () => {
    up = await startMcpNode();
    for (const description of ["first", "second", "third"]) {
      const res = await fetch(`${up.node.url}/api/v1/apps/acme-web`, {
        method: "PATCH",
        headers: { authorization: `Bearer ${up.nodeKey}`, "content-type": "application/merge-patch+json" },
        body: JSON.stringify({ description }),
      });
      assert.equal(res.status, 200, await res.text());
    }
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await up?.node.close();
  });

  it("shows the chain verified, then the tampered row in red, by the browser and by the node", async () => {
    const { context, page, consoleErrors } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.nodeKey);
      await page.goto("/audit");
      const browserVerdict = page.getByTestId("browser-verdict");
      const nodeVerdict = page.getByTestId("node-verdict");
      await browserVerdict.filter({ hasText: "verified in this browser" }).waitFor({ timeout: 15_000 });
      await nodeVerdict.filter({ hasText: "verified by the node" }).waitFor({ timeout: 15_000 });
      assert.equal(await page.locator("tr.broken").count(), 0);
      await assertAccessible(page, "audit");
      await screenshots(page, "audit");

      // The filter narrows to one action.
      await page.getByLabel("action").fill("app.update");
      await page.getByRole("button", { name: "Filter" }).click();
      await page.locator("tbody tr").first().waitFor();
      const actions = await page.locator("tbody tr td:nth-child(4)").allTextContents();
      assert.ok(actions.length >= 3, `three updates shown: ${actions}`);
      assert.deepEqual([...new Set(actions)], ["app.update"]);

      const store = up.node.store;
      assert.ok(store, "the node has a store");
      const target = await store.db
        .selectFrom("audit_events")
        .select("seq")
        .where("action", "=", "app.update")
        .orderBy("seq", "asc")
        .executeTakeFirstOrThrow();
      const seq = Number(target.seq);
      await store.db.updateTable("audit_events").set({ actor: "mallory" }).where("seq", "=", seq).execute();

      await page.getByLabel("action").fill("");
      await page.reload();
      await browserVerdict.filter({ hasText: `broken at seq ${seq}` }).waitFor({ timeout: 15_000 });
      await nodeVerdict.filter({ hasText: `broken at seq ${seq}` }).waitFor({ timeout: 15_000 });
      const red = page.locator("tr.broken");
      assert.deepEqual(await red.evaluateAll((rows) => rows.map((r) => r.getAttribute("data-seq"))), [
        String(seq),
      ]);
      // A string: this file compiles without the DOM's types.
      const colour = (await page.evaluate(
        'getComputedStyle(document.querySelector("tr.broken td")).color',
      )) as string;
      assert.match(colour, /^rgb\((198, 40, 40|255, 123, 114)\)$/, "the broken row is red");
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
        "no CSP or script errors (the login page's session probe answers 401)",
      );
    } finally {
      await context.close();
    }
  });

  it("is the node key's alone: a tenant's session gets no audit rows", async () => {
    const { context, page } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.acmeToken);
      for (const path of ["/v1/audit/events", "/v1/audit/verify", "/api/v1/audit"]) {
        const { status, text } = await fetchAsDashboard(page, path);
        assert.equal(status, 403, `${path}: ${status} ${text}`);
        assert.ok(!text.includes("event_hash"), `${path}: no rows`);
      }
      await page.goto("/apps");
      const nav = page.getByRole("navigation", { name: "Main" });
      await nav.getByRole("link", { name: "Apps" }).waitFor();
      assert.equal(await nav.getByRole("link", { name: "Audit" }).count(), 0, "a tenant is shown Audit");
      assert.equal(
        await nav.getByRole("link", { name: "Topology" }).count(),
        0,
        "a tenant is shown Topology",
      );
      await page.goto("/audit");
      await page.getByRole("alert").waitFor();
      assert.equal(await page.locator("tbody tr").count(), 0);
    } finally {
      await context.close();
    }
  });
});
