import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applyMergePatch, diff } from "./apps-diff.js";

describe("JSON merge patch (RFC 7396 appendix A)", () => {
  const cases: Array<[unknown, unknown, unknown]> = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [
      ["a", "b"],
      ["c", "d"],
      ["c", "d"],
    ],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, expected] of cases) {
    it(`${JSON.stringify(target)} + ${JSON.stringify(patch)}`, () => {
      assert.deepEqual(applyMergePatch(target, patch), expected);
    });
  }

  it("leaves its inputs alone", () => {
    const target = { a: { b: 1 } };
    applyMergePatch(target, { a: { b: 2 } });
    assert.deepEqual(target, { a: { b: 1 } });
  });
});

describe("normalized diff", () => {
  it("lists member changes by JSON pointer, in sorted order, ignoring timestamps", () => {
    const before = {
      name: "web",
      branch: "main",
      build: { context: ".", builder: null },
      servers: ["a"],
      updated_at: "1",
    };
    const after = {
      name: "web",
      branch: "dev",
      build: { context: "app", builder: null },
      servers: ["a", "b"],
      labels: { "x/y": "1" },
      updated_at: "2",
    };
    assert.deepEqual(diff(before, after).changes, [
      { path: "/branch", op: "replace", from: "main", to: "dev" },
      { path: "/build/context", op: "replace", from: ".", to: "app" },
      { path: "/labels", op: "add", to: { "x/y": "1" } },
      { path: "/servers", op: "replace", from: ["a"], to: ["a", "b"] },
    ]);
  });

  it("spells creation and deletion member by member", () => {
    const app = { name: "web", tenant: "acme", created_at: "t" };
    assert.deepEqual(diff(null, app), {
      before: null,
      after: app,
      changes: [
        { path: "/name", op: "add", to: "web" },
        { path: "/tenant", op: "add", to: "acme" },
      ],
    });
    assert.deepEqual(diff(app, null).changes, [
      { path: "/name", op: "remove", from: "web" },
      { path: "/tenant", op: "remove", from: "acme" },
    ]);
  });

  it("escapes pointer tokens and reports nothing for equal documents", () => {
    assert.deepEqual(diff({ l: { "a/b~": 1 } }, { l: { "a/b~": 2 } }).changes, [
      { path: "/l/a~1b~0", op: "replace", from: 1, to: 2 },
    ]);
    assert.deepEqual(diff({ a: [1] }, { a: [1] }).changes, []);
  });
});
