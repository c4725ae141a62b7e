import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { AppLocks } from "./apps-lock.js";

describe("per-app mutation locks", () => {
  it("runs one app's mutations one at a time, in arrival order", async () => {
    const locks = new AppLocks(5_000);
    const order: string[] = [];
    let inside = 0;
    await Promise.all(
      ["a", "b", "c", "d"].map((id) =>
        locks.with("web", { actor: id, action: "app.update" }, async () => {
          inside += 1;
          assert.equal(inside, 1, "never two holders at once");
          order.push(id);
          await sleep(5);
          inside -= 1;
        }),
      ),
    );
    assert.deepEqual(order, ["a", "b", "c", "d"]);
    assert.equal(locks.holderOf("web"), undefined, "released when the queue is empty");
  });

  it("lets different apps proceed side by side", async () => {
    const locks = new AppLocks(200);
    let release!: () => void;
    const held = locks.with(
      "web",
      { actor: "x", action: "app.update" },
      () => new Promise<void>((r) => (release = r)),
    );
    await locks.with("api", { actor: "y", action: "app.update" }, async () => {});
    release();
    await held;
  });

  it("answers APP_LOCKED naming the holder when the wait runs out, and releases on throw", async () => {
    const locks = new AppLocks(100);
    let release!: () => void;
    const held = locks.with(
      "web",
      { actor: "node-key:1234abcd", action: "app.replace" },
      () => new Promise<void>((r) => (release = r)),
    );
    await assert.rejects(
      locks.with("web", { actor: "tenant:acme/bot", action: "app.update" }, async () => {}),
      (err: unknown) =>
        isTabbifyError(err, "APP_LOCKED") &&
        /locked by node-key:1234abcd \(app\.replace since \d{4}-/.test(err.message),
    );
    release();
    await held;
    await assert.rejects(
      locks.with("web", { actor: "a", action: "x" }, async () => Promise.reject(new Error("boom"))),
      /boom/,
    );
    await locks.with("web", { actor: "b", action: "x" }, async () => {});
  });
});
