import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runPool } from "./pool.js";

/** A promise with its resolve, to drive the work by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe("runPool", () => {
  it("does every item, never more than the limit at once", async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await runPool([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setImmediate(r));
      done.push(n);
      running--;
    });
    assert.deepEqual(
      done.sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(most, 3);
  });

  it("treats a limit below 1 as 1, and an empty list as nothing to do", async () => {
    let most = 0;
    let running = 0;
    await runPool([1, 2, 3], 0, async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setImmediate(r));
      running--;
    });
    assert.equal(most, 1);
    await runPool([], 4, async () => assert.fail("no item to work on"));
  });

  it("after a failure starts nothing new, and throws only once the started items settled", async () => {
    const slow = gate();
    const started: number[] = [];
    let slowSettled = false;
    const run = runPool([1, 2, 3, 4], 2, async (n) => {
      started.push(n);
      if (n === 1) {
        await slow.promise;
        slowSettled = true;
        return;
      }
      throw new Error(`item ${n} failed`);
    });
    const seen: { thrown?: Error } = {};
    const outcome = run.catch((err: Error) => {
      seen.thrown = err;
    });
    await new Promise((r) => setImmediate(r));
    const early = seen.thrown;
    assert.equal(early, undefined, "threw while item 1 was still running");
    slow.open();
    await outcome;
    assert.ok(slowSettled);
    assert.match(String(seen.thrown?.message), /item 2 failed/);
    assert.deepEqual(started, [1, 2]);
  });
});
