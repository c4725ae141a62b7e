import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
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

/** The topology page: the roster drawn as SVG, a supervisor with its runner and an orphan. */
describe("the dashboard's topology page, in chromium", () => {
  let up: McpNode;
  let browser: Browser;
  const runnerUuid = randomUUID();
  const orphanUuid = randomUUID();

  async function register(record: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${up.node.url}/v1/mesh/register`, {
      method: "POST",
      headers: { authorization: `Bearer ${up.nodeKey}`, "content-type": "application/json" },
      body: JSON.stringify(record),
    });
    assert.equal(res.status, 200, await res.text());
  }

  before(async () => {
    up = await startMcpNode();
    await register({
      kind: "supervisor",
      name: "edge-1",
      address: "http://127.0.0.1:9001",
      ula: "fd5a:1f00:0:1::1",
      version: "0.1.0",
      tags: ["supervisor", "process", "wasm"],
    });
    await register({
      kind: "runner",
      name: runnerUuid,
      app_uuid: runnerUuid,
      parent: "edge-1",
      address: "127.9.9.9:8730",
      ula: "127.9.9.9",
      version: "0.1.0",
      tags: ["runner"],
    });
    await register({
      kind: "runner",
      name: orphanUuid,
      app_uuid: orphanUuid,
      parent: "gone-host",
      address: "127.9.9.10:8730",
      ula: "127.9.9.10",
      version: "0.1.0",
      tags: ["runner"],
    });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await up?.node.close();
  });

  it("draws the supervisor with its runner, tags and health, and the orphan apart", async () => {
    const { context, page, consoleErrors } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.nodeKey);
      await page.getByRole("link", { name: "Topology" }).click();
      const host = page.locator('svg g.host[data-host="edge-1"]');
      await host.waitFor({ timeout: 15_000 });
      assert.match((await host.textContent()) ?? "", /edge-1.*● up.*supervisor · process · wasm/s);
      await host.locator(`g.runner[data-runner="${runnerUuid}"]`).waitFor();
      await page.locator(`g.runner.orphan[data-runner="${orphanUuid}"]`).waitFor();
      assert.equal(await page.locator("table").count(), 0, "a picture, not a table");
      await assertAccessible(page, "topology");
      await screenshots(page, "topology");
      assert.deepEqual(
        consoleErrors.filter((e) => !/401/.test(e)),
        [],
        "no CSP or script errors (the login page's session probe answers 401)",
      );
    } finally {
      await context.close();
    }
  });

  it("is the node key's alone: a tenant's session sees no hosts", async () => {
    const { context, page } = await newPage(browser, up.node.url);
    try {
      await logIn(page, up.otherToken);
      const res = await fetchAsDashboard(page, "/v1/topology");
      assert.ok([401, 403].includes(res.status), `topology: ${res.status}`);
      await page.goto("/topology");
      await page.getByRole("alert").waitFor();
      assert.equal(await page.locator("g.host").count(), 0);
    } finally {
      await context.close();
    }
  });
});
