import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { locateTomlKey } from "./toml-locate.js";

const source = [
  'name = "top"', // 1
  "", // 2
  "[app]", // 3
  '  "name"   = "a"', // 4
  "[[deploy]]", // 5
  'target = "x"', // 6
  "[[deploy]]", // 7
  'target = "y"', // 8
  "[deploy.env]", // 9
  'KEY = "v"', // 10
].join("\n");

describe("locateTomlKey", () => {
  it("finds a key in its table, with the key's and the value's columns", () => {
    assert.deepEqual(locateTomlKey(source, ["app", "name"]), { line: 4, column: 3, valueColumn: 14 });
    assert.deepEqual(locateTomlKey(source, ["name"]), { line: 1, column: 1, valueColumn: 8 });
  });

  it("picks the n-th entry of an array of tables, and the sub-tables that follow it", () => {
    assert.equal(locateTomlKey(source, ["deploy", 0, "target"]).line, 6);
    assert.equal(locateTomlKey(source, ["deploy", 1, "target"]).line, 8);
    assert.equal(locateTomlKey(source, ["deploy", 1]).line, 7);
    assert.equal(locateTomlKey(source, ["deploy", 1, "env", "KEY"]).line, 10);
  });

  it("finds a key that names a table at its header", () => {
    assert.deepEqual(locateTomlKey(source, ["app"]), { line: 3, column: 1, valueColumn: 1 });
    assert.equal(locateTomlKey(source, ["deploy", 1, "env"]).line, 9);
  });

  it("finds dotted keys before the first header", () => {
    assert.deepEqual(locateTomlKey('app.name = 1\nlifecycle.mode = "x"\n', ["lifecycle", "mode"]), {
      line: 2,
      column: 1,
      valueColumn: 18,
    });
  });

  it("falls back to the table's header, then to 1:1", () => {
    assert.equal(locateTomlKey(source, ["app", "missing"]).line, 3);
    assert.deepEqual(locateTomlKey("", ["app", "name"]), { line: 1, column: 1, valueColumn: 1 });
  });
});
