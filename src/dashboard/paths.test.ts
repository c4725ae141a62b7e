import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ASSET_PREFIX, dashboardSections, SESSION_API } from "./paths.js";

describe("dashboard paths", () => {
  it("no page section is an API prefix, so the SPA fallback never shadows the API", () => {
    const api = [
      "v1",
      "v2",
      "api",
      "app",
      "git",
      "mcp",
      "docs",
      "openapi.json",
      "health",
      "healthz",
      "webhook",
    ];
    for (const section of dashboardSections) {
      assert.ok(!api.includes(section), `${section} is an API prefix`);
      assert.match(section, /^[a-z][a-z-]*$/);
    }
    assert.ok(!dashboardSections.some((s) => `/${s}/` === ASSET_PREFIX));
    assert.ok(SESSION_API.startsWith("/api/"));
  });
});
