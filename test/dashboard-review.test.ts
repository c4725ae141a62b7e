import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { contractSha } from "../src/contract/canonical.js";
import { parseContract } from "../src/contract/contract-wire.js";
import { assertAccessible, launchChromium, logIn, newPage, screenshots } from "./support/browser.js";
import { type ContractStack, call, contractOf, startContractStack } from "./support/contract-stack.js";

/** The review page at a plan's reviewUrl: approve with a grant, the next deploy passes, revoke. */

const handler = `export default (req: Request) => new Response(process.env.GREETING ?? "hi");`;

async function deploySession(stack: ContractStack, token: string, planId?: string) {
  const { contract, sha } = await contractOf(handler);
  return call(stack, "POST", "/v1/deploy/session", token, {
    projectName: "shop",
    region: "default",
    contract,
    contractSha256: sha,
    ...(planId ? { planId } : {}),
  });
}

describe("the dashboard's review page, in chromium", () => {
  let stack: ContractStack;
  let browser: Browser;
  before(async () => {
    stack = await startContractStack({ fakeSupervisor: true });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await stack?.close();
  });

  it("approves a plan with a grant from its reviewUrl; the next deploy passes; the grant is revoked", async () => {
    const first = await deploySession(stack, stack.acme);
    assert.equal(first.status, 202, JSON.stringify(first.json));
    const planId = first.json.planId as string;
    const reviewUrl = new URL(first.json.reviewUrl as string);
    assert.equal(reviewUrl.pathname, `/review/${planId}`);

    const { context, page, consoleErrors } = await newPage(browser, stack.url);
    try {
      await logIn(page, stack.acme);
      await page.goto(reviewUrl.pathname);
      await page.getByRole("heading", { name: "Review plan" }).waitFor();
      const reasons = page.getByRole("list", { name: "reasons" }).locator("li");
      await reasons.first().waitFor();
      assert.deepEqual(await reasons.allTextContents(), [
        "uncovered new env read: GREETING",
        "uncovered new route: /*",
      ]);
      // The contracts themselves, not only their digests: a first deploy has no baseline, so the
      // whole proposed contract is the change.
      const proposed = page.getByLabel("proposed contract");
      assert.match(await proposed.innerText(), /"GREETING"/);
      assert.equal(await page.getByLabel("baseline contract").count(), 0);
      const added = page.getByLabel("contract changes").locator(".diff-add");
      assert.ok((await added.count()) > 5, "every line of a first contract is an addition");
      assert.match((await added.allInnerTexts()).join("\n"), /\+ +"GREETING"/);
      await assertAccessible(page, "review");
      await screenshots(page, "review");

      await page.getByRole("button", { name: "Approve and grant" }).click();
      await page
        .getByRole("dialog", { name: "Approve and grant" })
        .getByRole("button", { name: "Confirm" })
        .click();
      // Decided: the buttons give way to who decided and how.
      await page.getByText(/\(grant\)$/).waitFor();
      await page.locator(".badge", { hasText: /^approved$/ }).waitFor();
      const grant = page.locator("li[data-grant]");
      await grant.waitFor();

      const next = await deploySession(stack, stack.acme, planId);
      assert.equal(next.status, 200, `the approved deploy passes: ${JSON.stringify(next.json)}`);

      await grant.getByRole("button", { name: "Revoke" }).click();
      await page.getByRole("dialog", { name: "Revoke" }).getByRole("button", { name: "Confirm" }).click();
      await grant.getByRole("button", { name: "Revoke" }).waitFor({ state: "detached" });
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
        "no CSP or script errors (the login page's session probe answers 401)",
      );
    } finally {
      await context.close();
    }
  });

  it("shows a hostile contract's text as text: no markup from it reaches the page", async () => {
    const { contract } = await contractOf(handler);
    const hostile = `/x</pre><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
    const body = { ...contract, routes: [...contract.routes, { pattern: hostile, isPrefix: false }] };
    const plan = await call(stack, "POST", "/v1/deploy/session", stack.acme, {
      projectName: "hostile",
      region: "default",
      contract: body,
      contractSha256: contractSha(parseContract(body)),
    });
    assert.equal(plan.status, 202, JSON.stringify(plan.json));
    const { context, page, consoleErrors } = await newPage(browser, stack.url);
    try {
      await logIn(page, stack.acme);
      await page.goto(`/review/${plan.json.planId}`);
      const proposed = page.getByLabel("proposed contract");
      await proposed.waitFor();
      assert.ok(
        (await proposed.innerText()).includes(hostile.replaceAll('"', '\\"')),
        "shown as its JSON text",
      );
      assert.equal(await page.locator("main img, main script").count(), 0, "markup from the contract");
      assert.equal(await page.evaluate("window.__pwned ?? null"), null);
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
      );
    } finally {
      await context.close();
    }
  });

  it("does not show another tenant's plan by URL", async () => {
    const plan = await deploySession(stack, stack.globex);
    assert.equal(plan.status, 202, JSON.stringify(plan.json));
    const { context, page } = await newPage(browser, stack.url);
    try {
      await logIn(page, stack.acme);
      await page.goto(`/review/${plan.json.planId}`);
      await page.getByRole("alert").waitFor();
      assert.equal(await page.getByRole("button", { name: "Approve once" }).count(), 0);
      const res = await page.request.post(`/v1/deploy/plans/${plan.json.planId}/approve`, {
        data: { mode: "once" },
      });
      assert.equal(res.status(), 403, "no CSRF token: refused before any handler");
      const shown = await call(stack, "GET", `/v1/deploy/plans/${plan.json.planId}`, stack.globex);
      assert.equal(shown.json.status, "pending", "still pending for its own tenant");
    } finally {
      await context.close();
    }
  });
});
