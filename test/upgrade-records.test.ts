/** The platform_upgrades rows on both store engines: how a lost upgrader is told from a live one. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { sleep } from "../src/core/sleep.js";
import { openStore, type Store } from "../src/store/index.js";
import { beatUpgrade, createUpgrade, readUpgrade, updateUpgrade } from "../src/upgrade/records.js";
import { freshDatabaseUrl } from "./support/postgres.js";

for (const engine of ["sqlite", "postgres"] as const) {
  describe(`platform upgrade records (${engine})`, () => {
    let store: Store;
    before(async () => {
      store =
        engine === "sqlite"
          ? await openStore({ engine: "sqlite", file: ":memory:" })
          : await openStore({ engine: "postgres", url: await freshDatabaseUrl() });
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

    it("read from another host (a shared store), an upgrader is judged by its heartbeat, not a pid", async () => {
      const id = "44444444-4444-4444-8444-444444444444";
      await createUpgrade(store, { id, kind: "upgrade", from_version: "1.0.0" });
      // A pid that is dead here means nothing about a process on another host.
      await updateUpgrade(store, id, {
        upgrader_pid: await deadPid(),
        upgrader_host: "another-host.invalid",
        phase: "auth",
      });
      assert.equal((await readUpgrade(store, id, "1.0.0"))?.status, "in_progress");
      await beatUpgrade(store, id, new Date(Date.now() - 5 * 60_000));
      const read = await readUpgrade(store, id, "1.0.0");
      assert.equal(read?.status, "failed");
      assert.match(String(read?.error), /on another-host\.invalid/);
    });
  });
}
