// The stale-upload sweep's age and interval come from flags and their env twins: a session left
// open past --upload-max-age is gone after the next sweep, one still being written is kept.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { call, spawnRegistry } from "./registry-helpers.js";
import { sleep } from "./support/tools.js";

async function sweptAfterIdle(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-sweep-"));
  const registry = await spawnRegistry(dataDir, args, env);
  try {
    const idle = await call(registry.url, "/v2/sweep/app/blobs/uploads/", { method: "POST" });
    const busy = await call(registry.url, "/v2/sweep/app/blobs/uploads/", { method: "POST" });
    assert.equal(idle.status, 202);
    const idleAt = idle.headers.get("location")!;
    const busyAt = busy.headers.get("location")!;
    assert.equal((await call(registry.url, idleAt)).status, 204, "open before the sweep");
    // Keep one session fresh with small chunks while the other ages past 2 s.
    let offset = 0;
    for (let i = 0; i < 10; i++) {
      await sleep(500);
      const patch = await call(registry.url, busyAt, {
        method: "PATCH",
        body: "x",
        headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${offset}` },
      });
      assert.equal(patch.status, 202, patch.body.toString());
      offset++;
    }
    const gone = await call(registry.url, idleAt);
    assert.equal(gone.status, 404, "the idle session was swept");
    assert.equal((await call(registry.url, busyAt)).status, 204, "the busy session was kept");
  } finally {
    await registry.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

it("--upload-max-age and --upload-sweep-interval drive the sweep", async () => {
  await sweptAfterIdle(["--upload-max-age", "2s", "--upload-sweep-interval", "1s"], {});
});

it("REGISTRY_UPLOAD_MAX_AGE and REGISTRY_UPLOAD_SWEEP_INTERVAL are their env twins", async () => {
  await sweptAfterIdle([], { REGISTRY_UPLOAD_MAX_AGE: "2", REGISTRY_UPLOAD_SWEEP_INTERVAL: "1s" });
});

it("a sweep flag that is not a duration, or is 0, is refused at start", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-sweep-"));
  try {
    for (const args of [
      ["--upload-max-age", "soon"],
      ["--upload-sweep-interval", "0"],
    ]) {
      await assert.rejects(spawnRegistry(dataDir, args), /upload-(max-age|sweep-interval)/);
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
