/**
 * Debian's chromium driven through playwright-core, for the dashboard's browser tests: never
 * `playwright install` (it downloads, which this machine cannot). Plus two checks every page
 * gets: axe-core's accessibility rules, and a screenshot at desktop and phone width.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { repoRoot } from "./tools.js";

export const CHROMIUM = "/usr/bin/chromium";
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** Desktop shots are committed (the README shows them); phone ones stay with the test output. */
export const SCREENSHOT_DIR = join(repoRoot, "docs", "screenshots");
export const PHONE_SCREENSHOT_DIR = join(repoRoot, "dist", "screenshots", "phone");

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the dashboard's browser tests need Debian's chromium at ${CHROMIUM}: install it with \`sudo apt-get install -y chromium\``,
    );
  }
  // No sandbox: the tests run as root in a container, where chromium's own sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}

/** A fresh context (its own cookies) at desktop size, with the page's console errors collected. */
export async function newPage(
  browser: Browser,
  baseURL: string,
): Promise<{ context: BrowserContext; page: Page; consoleErrors: string[] }> {
  const context = await browser.newContext({ baseURL, viewport: DESKTOP });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(err.message));
  return { context, page, consoleErrors };
}

/** Logs the page in through the login form, the way a user does, and waits for the apps list. */
export async function logIn(page: Page, token: string): Promise<void> {
  await page.goto("/login");
  await page.getByLabel("Node key or tenant token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/apps$/, { timeout: 15_000 });
}

let axeSource: string | undefined;

/**
 * Runs axe-core in the page and fails on any serious or critical violation, naming each. The
 * script is evaluated through the devtools protocol, so the page's CSP (no inline script) stays
 * in force for everything the page itself does.
 */
export async function assertAccessible(page: Page, label: string): Promise<void> {
  axeSource ??= await readFile(join(repoRoot, "node_modules", "axe-core", "axe.min.js"), "utf8");
  await page.evaluate(`${axeSource};0`);
  const violations = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe;
    const result = await axe.run();
    return result.violations;
  })) as { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
  const bad = violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  assert.deepEqual(bad, [], `${label}: accessibility violations`);
}

/**
 * Saves `<name>.png` at desktop width under docs/screenshots/ and at phone width under
 * dist/screenshots/phone/, and checks the phone layout does not scroll sideways.
 */
export async function screenshots(page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await mkdir(PHONE_SCREENSHOT_DIR, { recursive: true });
  const before = page.viewportSize() ?? DESKTOP;
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(PHONE_SCREENSHOT_DIR, `${name}.png`), fullPage: true });
  // Strings: this file compiles without the DOM's types.
  const overflow = (await page.evaluate(
    "document.documentElement.scrollWidth - window.innerWidth",
  )) as number;
  const culprits = overflow > 1 ? ((await page.evaluate(WIDER_THAN_VIEWPORT)) as string[]) : [];
  assert.ok(
    overflow <= 1,
    `${name}: the page scrolls ${overflow}px sideways at phone width: ${culprits.join(", ")}`,
  );
  await page.setViewportSize(before);
}

/** The innermost elements reaching past the viewport's right edge, as tag.class#text. */
const WIDER_THAN_VIEWPORT = `[...document.querySelectorAll("body *")]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
  .filter((el) => ![...el.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5)
  .map((el) => el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + "#" + (el.textContent || "").slice(0, 40))`;

/**
 * A request made by the dashboard's own page, with the session token its index.html carries (the
 * node fills it in on a top-level navigation): what the page's script could ask the API. Navigates
 * to `from` first so the page holds the token.
 */
export async function fetchAsDashboard(
  page: Page,
  path: string,
  opts: { from?: string; method?: string } = {},
): Promise<{ status: number; text: string }> {
  await page.goto(opts.from ?? "/apps");
  const script = `(async () => {
    const token = document.querySelector('meta[name="tabbify-csrf"]')?.content ?? "";
    if (!token) return { status: -1, text: "the page carries no session token" };
    const res = await fetch(${JSON.stringify(path)}, {
      method: ${JSON.stringify(opts.method ?? "GET")},
      headers: { "x-csrf-token": token },
    });
    return { status: res.status, text: await res.text() };
  })()`;
  const out = (await page.evaluate(script)) as { status: number; text: string };
  assert.notEqual(out.status, -1, out.text);
  return out;
}
