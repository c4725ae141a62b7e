// The dashboard on a whole `tabbify up`, in Debian's chromium: an app pushed with git, a push
// watched live on its deploy page, a failed deploy's reason, rollback and promote from the app
// page, the log tail following, and a device login approved from the verification_uri. Each
// page also passes axe and is screenshotted at desktop and phone width.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { sleep } from "../src/core/sleep.js";
import { assertAccessible, launchChromium, logIn, newPage, screenshots } from "./support/browser.js";
import { adminJson, type DashboardStack, startDashboardStack } from "./support/dashboard-stack.js";

interface Envs {
  uuid: string;
  environments: { name: string; current: { digest: string } | null; runs: { digest: string }[] }[];
}

const APP = "webapp";
const LONG = 240_000;

describe("the dashboard on tabbify up", () => {
  let stack: DashboardStack;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let consoleErrors: string[];

  const latestDeploy = async () =>
    (await adminJson<{ deploys: { id: string }[] }>(stack, `/api/v1/apps/${APP}/deploys?limit=1`)).deploys[0]
      ?.id;
  const envs = () => adminJson<Envs>(stack, `/api/v1/apps/${APP}/environments`);
  const currentOf = async (env: string) =>
    (await envs()).environments.find((e) => e.name === env)?.current?.digest;

  /** Starts a push and answers the id of the deploy it started, as soon as the node lists it. */
  async function pushAndFindDeploy(greeting: string, broken = false) {
    const before = await latestDeploy();
    const run = await stack.push(APP, greeting, { broken });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const id = await latestDeploy();
      if (id && id !== before) return { id, run };
      assert.ok(Date.now() < deadline, "the push started no deploy within 60 s");
      await sleep(200);
    }
  }

  before(async () => {
    stack = await startDashboardStack("dashboard-deploys");
    const first = await stack.push(APP, "page-v1");
    const result = await first.done;
    assert.equal(result.code, 0, result.out);
    browser = await launchChromium();
    ({ context, page, consoleErrors } = await newPage(browser, stack.url));
  });
  after(async () => {
    await context?.close();
    await browser?.close();
    await stack?.close();
  });

  it("logs in with the node key and lists the app: its release, health, URL and last deploy", async () => {
    await logIn(page, stack.nodeKey);
    const card = page.locator(`li[data-app="${APP}"]`);
    await card.waitFor();
    const { uuid } = await envs();
    await card.getByRole("link", { name: /\/app\// }).waitFor();
    assert.equal(await card.getByRole("link", { name: /\/app\// }).getAttribute("href"), `/app/${uuid}/`);
    await card.locator(".badge", { hasText: "succeeded" }).waitFor({ timeout: 30_000 });
    await card.locator("code.short").first().waitFor({ timeout: 30_000 });
    await card.locator(".badge", { hasText: "running" }).waitFor({ timeout: 60_000 });
    await assertAccessible(page, "apps");
    await screenshots(page, "apps");
  });

  it("a push shows its deploy page turning green live", { timeout: LONG }, async () => {
    const { id, run } = await pushAndFindDeploy("page-v2");
    await page.goto(`/apps/${APP}/deploys/${id}`);
    // Seen while it ran: a step still in progress, on the page the user opened.
    await page.locator('.timeline li[data-state="running"]').first().waitFor({ timeout: 60_000 });
    const result = await run.done;
    assert.equal(result.code, 0, result.out);
    await page.locator("h1 + .badge", { hasText: "succeeded" }).waitFor({ timeout: 60_000 });
    const states = await page
      .locator(".timeline li")
      .evaluateAll((lis) => lis.map((li) => li.getAttribute("data-state")));
    assert.ok(states.length >= 3, `steps: ${states.join(",")}`);
    assert.deepEqual(
      states.filter((s) => s !== "succeeded"),
      [],
      "every step green",
    );
    await page.locator('.timeline li[data-step="build_and_push"] summary').waitFor();
    await assertAccessible(page, "deploy");
    await screenshots(page, "deploy");
    // Opened again when finished, it replays the same steps.
    await page.reload();
    await page.locator("h1 + .badge", { hasText: "succeeded" }).waitFor({ timeout: 30_000 });
    // The badge comes with the record, the steps with the replayed event stream just after it.
    await page
      .waitForFunction(`document.querySelectorAll(".timeline li").length >= ${states.length}`, undefined, {
        timeout: 30_000,
      })
      .catch(() => {});
    assert.equal(await page.locator(".timeline li").count(), states.length);
  });

  it("a failed deploy's page says where and why it failed, with the log tail", {
    timeout: LONG,
  }, async () => {
    const { id, run } = await pushAndFindDeploy("page-broken", true);
    const result = await run.done;
    assert.notEqual(result.code, 0, "a broken Dockerfile deployed");
    await page.goto(`/apps/${APP}/deploys/${id}`);
    const failure = page.locator(".failure");
    await failure.waitFor({ timeout: 60_000 });
    const text = await failure.innerText();
    assert.match(text, /Failed at build_and_push/);
    assert.match(text, /no-such-file/);
    await assertAccessible(page, "failed deploy");
    await screenshots(page, "deploy-failed");
  });

  it("rolls back and promotes from the app page, each confirmed and audited", { timeout: LONG }, async () => {
    await adminJson(stack, `/api/v1/apps/${APP}`, {
      method: "PATCH",
      body: { environments: ["prod", "live"] },
    });
    const prod = (await envs()).environments.find((e) => e.name === "prod")!;
    const [v2, v1] = [prod.runs[0]!.digest, prod.runs[1]!.digest];
    assert.equal(prod.current?.digest, v2);
    assert.notEqual(v1, v2);

    await page.goto(`/apps/${APP}`);
    const prodCard = page.locator('.env[data-env="prod"]');
    await prodCard.getByRole("button", { name: "Roll back prod" }).click();
    const dialog = page.getByRole("dialog", { name: "Roll back prod" });
    await dialog.getByRole("button", { name: "Cancel" }).click();
    assert.equal(await currentOf("prod"), v2, "Cancel changed nothing");
    await prodCard.getByRole("button", { name: "Roll back prod" }).click();
    await dialog.getByRole("button", { name: "Confirm" }).click();
    await prodCard.getByRole("status").filter({ hasText: "rolled back to" }).waitFor({ timeout: 180_000 });
    assert.equal(await currentOf("prod"), v1);

    await prodCard.getByRole("button", { name: "Promote to live" }).click();
    await page
      .getByRole("dialog", { name: "Promote to live" })
      .getByRole("button", { name: "Confirm" })
      .click();
    await prodCard.getByRole("status").filter({ hasText: "promoted to live" }).waitFor({ timeout: 180_000 });
    assert.equal(await currentOf("live"), v1);
    await page.locator('.env[data-env="live"] code.short').first().waitFor({ timeout: 30_000 });

    await page.getByRole("button", { name: "Restart" }).click();
    await page.getByRole("dialog", { name: "Restart" }).getByRole("button", { name: "Confirm" }).click();
    await page
      .getByRole("status")
      .filter({ hasText: /^restart: .* ok/ })
      .waitFor({ timeout: 120_000 });

    const audit = await adminJson<{ events: { action: string; actor: string }[] }>(
      stack,
      "/api/v1/audit?limit=1000",
    );
    const actions = audit.events.map((e) => e.action);
    assert.ok(actions.includes("release.rollback"), actions.join(","));
    assert.ok(
      actions.some((a) => a.startsWith("release.promote")),
      actions.join(","),
    );
    await assertAccessible(page, "app");
    await screenshots(page, "app");
  });

  it("the app page's log tail follows new lines and holds still while paused", {
    timeout: LONG,
  }, async () => {
    await page.goto(`/apps/${APP}`);
    const log = page.getByTestId("log");
    // Counted, not compared: a restart (the test before) starts the app's counter again at 1.
    const ticks = async () => [...(await log.innerText()).matchAll(/dashboard-tick-\d+/g)].length;
    /** Waits until the log shows more tick lines than `n`. */
    const beyond = async (n: number) => {
      const until = Date.now() + 60_000;
      while ((await ticks()) <= n) {
        assert.ok(
          Date.now() < until,
          `no tick line past ${n} within 60 s: ${(await log.innerText()).slice(-300)}`,
        );
        await page.waitForTimeout(250);
      }
    };
    await beyond(0);
    await beyond((await ticks()) + 1);
    await page.getByRole("button", { name: "Pause" }).click();
    const held = await log.innerText();
    await page.waitForTimeout(2500);
    assert.equal(await log.innerText(), held, "the paused view moved");
    const pausedAt = await ticks();
    await page.getByRole("button", { name: "Resume" }).click();
    await beyond(pausedAt);
  });

  it("a device login is approved on the dashboard page its verification_uri names", async () => {
    const start = await fetch(`${stack.url}/v1/auth/device`, { method: "POST" });
    const grant = (await start.json()) as {
      device_code: string;
      user_code: string;
      verification_uri: string;
      verification_uri_complete: string;
    };
    assert.equal(start.status, 200, JSON.stringify(grant));
    assert.equal(new URL(grant.verification_uri).pathname, "/device");
    await page.goto(grant.verification_uri_complete);
    assert.equal(await page.getByLabel("Code shown by tcli").inputValue(), grant.user_code);
    await page.getByLabel("Tenant").fill("local");
    await assertAccessible(page, "device");
    await screenshots(page, "device");
    await page.getByRole("button", { name: "Approve" }).click();
    await page.getByRole("status").filter({ hasText: "Approved" }).waitFor();
    const token = await fetch(`${stack.url}/v1/auth/device/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        grant_type: "urn:ietf:params:oauth:grant-type:device_code",
        device_code: grant.device_code,
      }),
    });
    const body = (await token.json()) as { access_token?: string };
    assert.equal(token.status, 200, JSON.stringify(body));
    assert.ok(body.access_token);
    assert.deepEqual(
      consoleErrors.filter((e) => !/status of 40[0-9]/.test(e)),
      [],
      "no CSP or script errors on any page",
    );
  });
});
