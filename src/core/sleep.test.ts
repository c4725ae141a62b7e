import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sleep } from "./sleep.js";

describe("sleep", () => {
  it("resolves no sooner than asked", async () => {
    const t0 = performance.now();
    await sleep(30);
    // Timers may fire a millisecond early by rounding; never tens of milliseconds early.
    assert.ok(performance.now() - t0 >= 29, `woke after ${performance.now() - t0} ms`);
  });

  it("with unref, does not keep the process alive", async () => {
    const { spawnSync } = await import("node:child_process");
    const url = new URL("./sleep.js", import.meta.url).href;
    const t0 = performance.now();
    const run = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { sleep } from ${JSON.stringify(url)}; sleep(60_000, { unref: true });`,
      ],
      { timeout: 30_000 },
    );
    assert.equal(run.status, 0, String(run.stderr));
    assert.ok(performance.now() - t0 < 30_000, "the process waited for the unref'd timer");
  });
});
