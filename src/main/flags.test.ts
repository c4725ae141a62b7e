import assert from "node:assert/strict";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { intOption, parseListen } from "./flags.js";

test("intOption takes integers at or above its minimum and refuses the rest with USAGE", () => {
  assert.equal(intOption("5", "n"), 5);
  assert.equal(intOption("0", "warm-spares", 0), 0);
  for (const [value, min] of [
    ["0", 1],
    ["-1", 0],
    ["1.5", 0],
    ["", 1],
    [undefined, 1],
    ["ten", 0],
  ] as const) {
    assert.throws(
      () => intOption(value, "n", min),
      (err: unknown) => isTabbifyError(err, "USAGE") && err.message === `--n wants an integer >= ${min}`,
      `${value} with min ${min}`,
    );
  }
});

test("parseListen reads HOST:PORT, [IPv6]:PORT and :PORT", () => {
  assert.deepEqual(parseListen("127.0.0.1:8730"), { host: "127.0.0.1", port: 8730 });
  assert.deepEqual(parseListen("[fd5a:1f00::1]:8730"), { host: "fd5a:1f00::1", port: 8730 });
  assert.deepEqual(parseListen(":80"), { host: "127.0.0.1", port: 80 });
  assert.throws(
    () => parseListen("nope"),
    (err: unknown) => isTabbifyError(err, "USAGE"),
  );
  assert.throws(
    () => parseListen("h:70000"),
    (err: unknown) => isTabbifyError(err, "USAGE"),
  );
});
