/**
 * The dashboard's Proofs and Registry pages, in chromium, on a real node, registry and supervisor:
 * `tcli deploy` a handler twice (the second adds an env read and a route), then the ledger shows
 * both releases with their verdicts and the change, and the registry shows the bundle's
 * repository with its tags, digests and referrers (release manifest, proof, signature). Another
 * tenant sees none of it.
 */
import assert from "node:assert/strict";
import { cp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { fastSupervisorArgs, SupervisorUnderTest, until } from "./runtime-plane-support.js";
import {
  assertAccessible,
  fetchAsDashboard,
  launchChromium,
  logIn,
  newPage,
  screenshots,
} from "./support/browser.js";
import { CONTRACT_NODE_KEY, type ContractStack, startContractStack } from "./support/contract-stack.js";
import { runTcli } from "./support/tcli-node.js";
import { repoRoot, tempDir } from "./support/tools.js";

describe("the dashboard's proofs and registry pages, in chromium", () => {
  let stack: ContractStack;
  let sup: SupervisorUnderTest;
  let work: { path: string; remove(): Promise<void> };
  let browser: Browser;
  const tcli = (args: string[]) =>
    runTcli(args, {
      home: work.path,
      env: { TABBIFY_TOKEN: CONTRACT_NODE_KEY, TABBIFY_NODE_URL: stack.url },
    });
  const hello = () => join(work.path, "hello-handler");

  /** Deploys, approving the plan first when the contract grew. */
  async function deploy(): Promise<void> {
    const first = await tcli(["deploy", hello()]);
    if (first.code === 0) return;
    assert.equal(first.code, 1, first.stdout + first.stderr);
    const planId = /plan +([0-9a-f-]{36})/.exec(first.stdout)?.[1];
    assert.ok(planId, first.stdout);
    const review = await tcli(["review", planId, "--approve"]);
    assert.equal(review.code, 0, review.stderr);
    const again = await tcli(["deploy", hello()]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
  }

  before(async () => {
    work = await tempDir("dashboard-proofs");
    sup = new SupervisorUnderTest([...fastSupervisorArgs(20_000), "--warm-spares", "0"], "local", {
      TABBIFY_NODE_KEY: CONTRACT_NODE_KEY,
    });
    stack = await startContractStack({ supervisorKey: sup.apiKey });
    sup.extraArgs.push("--node", stack.url);
    await sup.start();
    await until("the supervisor on the node's roster", async () =>
      stack.node.coordinator.supervisors().length > 0 ? true : undefined,
    );
    await cp(join(repoRoot, "examples", "hello-handler"), hello(), { recursive: true });
    await writeFile(join(hello(), ".env"), "GREETING=bonjour\nSIGNATURE=from-env\n");
    await deploy();
    // The second release reads one more env name and answers one more route.
    await writeFile(
      join(hello(), "handler.ts"),
      `export default function handler(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname === "/health") return new Response("ok\\n");
  if (url.pathname === "/signed") return new Response(\`\${process.env.SIGNATURE ?? "-"}\\n\`);
  if (url.pathname === "/") return new Response(\`\${process.env.GREETING ?? "hello"} from hello-handler\\n\`);
  return new Response("not found\\n", { status: 404 });
}
`,
    );
    await deploy();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await sup?.cleanup();
    await stack?.close();
    await work?.remove();
  });

  it("shows the proof ledger: each release's verdict, properties, surface and the change against the one before", async () => {
    const { context, page, consoleErrors } = await newPage(browser, stack.url);
    try {
      await logIn(page, CONTRACT_NODE_KEY);
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Proofs" }).click();
      await page.getByRole("link", { name: "hello-handler" }).click();
      const cards = page.getByRole("list", { name: "proof rows" }).locator("li.card");
      await until("two proof rows", async () => ((await cards.count()) === 2 ? true : undefined));
      const [newest, oldest] = [cards.nth(0), cards.nth(1)];
      assert.equal(
        await newest.locator("[data-verdict]").getAttribute("data-verdict"),
        "safe_with_additions",
      );
      assert.equal(await oldest.locator("[data-verdict]").getAttribute("data-verdict"), "safe");
      const changes = await newest.getByRole("list", { name: "changes" }).locator("li").allInnerTexts();
      assert.ok(changes.includes("+ env SIGNATURE"), changes.join(" | "));
      assert.ok(changes.includes("+ route /signed"), changes.join(" | "));
      assert.match(await newest.innerText(), /GREETING, SIGNATURE/);
      assert.ok((await newest.getByRole("list", { name: "proven properties" }).locator("li").count()) > 0);
      assert.match(await oldest.innerText(), /No earlier proof/);
      assert.doesNotMatch(await page.locator("main").innerText(), /bonjour|from-env/, "env values shown");
      await assertAccessible(page, "proofs");
      await screenshots(page, "proofs");
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
      );
    } finally {
      await context.close();
    }
  });

  it("shows the registry: the bundle's repository, its tags and digests, and each digest's referrers", async () => {
    const { context, page, consoleErrors } = await newPage(browser, stack.url);
    try {
      await logIn(page, CONTRACT_NODE_KEY);
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Registry" }).click();
      const repo = page.locator("li.card", { hasText: "hello-handler" });
      await repo.waitFor({ timeout: 30_000 });
      assert.match(await repo.innerText(), /admin\/[0-9a-f-]{36}/);
      const manifests = repo.locator("[data-digest]");
      await until("two tagged digests", async () => ((await manifests.count()) >= 2 ? true : undefined));
      for (const kind of ["release", "proof", "signature"]) {
        assert.ok(
          (await repo.locator(`li[data-kind="${kind}"]`).count()) >= 1,
          `a ${kind} referrer: ${await repo.innerText()}`,
        );
      }
      await assertAccessible(page, "registry");
      await screenshots(page, "registry");
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
      );
    } finally {
      await context.close();
    }
  });

  it("shows another tenant none of it, by page or by API", async () => {
    const { context, page } = await newPage(browser, stack.url);
    try {
      await logIn(page, stack.acme);
      await page.goto("/proofs/hello-handler");
      await page.getByText("No proof rows for this project.").waitFor();
      await page.goto("/registry");
      await page.getByText("No repositories yet.").waitFor();
      const projects = await fetchAsDashboard(page, "/v1/projects", { from: "/proofs" });
      assert.deepEqual(JSON.parse(projects.text), { projects: [] });
      const catalog = await fetchAsDashboard(page, "/api/v1/registry/catalog", { from: "/registry" });
      assert.doesNotMatch(catalog.text, /admin\/|hello-handler/);
    } finally {
      await context.close();
    }
  });
});
