import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { sleep } from "../core/sleep.js";
import { openStore, type Store } from "../store/index.js";
import { createUpgrade, readUpgrade, updateUpgrade } from "./records.js";

describe("platform upgrade records", () => {
  let store: Store;
  before(async () => {
    store = await openStore({ engine: "sqlite", file: ":memory:" });
  });
  after(async () => {
    await store.close();
  });

  /** A pid that surely exited: a child that ran and was reaped. */
  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ["-e", ""]);
    await new Promise((r) => child.once("exit", r));
    return child.pid!;
  }

  it("an upgrade whose upgrader died before the commit reads as failed, even on the new version", async () => {
    const id = "11111111-1111-4111-8111-111111111111";
    await createUpgrade(store, { id, kind: "upgrade", from_version: "1.0.0" });
    await updateUpgrade(store, id, { upgrader_pid: await deadPid(), phase: "node", to_version: "1.1.0" });
    const read = await readUpgrade(store, id, "1.1.0");
    assert.equal(read?.status, "failed");
    assert.match(String(read?.error), /exited before recording the outcome/);
    // Closed for good: a later read by anyone says the same.
    assert.equal((await readUpgrade(store, id, "1.0.0"))?.status, "failed");
  });

  it("one that died after the commit reads as completed when the node runs the target", async () => {
    const id = "22222222-2222-4222-8222-222222222222";
    await createUpgrade(store, { id, kind: "upgrade", from_version: "1.0.0" });
    await updateUpgrade(store, id, { upgrader_pid: await deadPid(), phase: "commit", to_version: "1.1.0" });
    assert.equal((await readUpgrade(store, id, "1.1.0"))?.status, "completed");
  });

  it("a live upgrader's upgrade stays in progress", async () => {
    const id = "33333333-3333-4333-8333-333333333333";
    await createUpgrade(store, { id, kind: "upgrade", from_version: "1.0.0" });
    // This test process stands in for the upgrader: its command line must name the id.
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", id]);
    try {
      await updateUpgrade(store, id, { upgrader_pid: child.pid!, phase: "registry" });
      await sleep(200);
      assert.equal((await readUpgrade(store, id, "1.0.0"))?.status, "in_progress");
    } finally {
      child.kill();
    }
  });
});
