import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runReadyChecks } from "./probes.js";

describe("ready checks", () => {
  it("reports each check: ok, its error, or a timeout", async () => {
    const results = await runReadyChecks(
      {
        fine: async () => {},
        broken: async () => {
          throw new Error("connection refused");
        },
        hung: () => new Promise<void>(() => {}),
      },
      100,
    );
    assert.deepEqual(results, {
      fine: { ok: true },
      broken: { ok: false, error: "connection refused" },
      hung: { ok: false, error: "no answer within 100 ms" },
    });
  });
});
