import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { tomlKeyName, trackKeyReads } from "./toml-unknown-keys.js";

describe("trackKeyReads", () => {
  it("lists the first key nothing read, depth first, through tables and arrays of tables", () => {
    const reads = trackKeyReads({ a: { b: 1, c: 2 }, list: [{ x: 1 }, { x: 2, y: 3 }] });
    assert.equal(reads.doc.a.b, 1);
    assert.deepEqual(reads.firstUnread(), ["a", "c"]);
    assert.equal("c" in reads.doc.a, true);
    assert.deepEqual(reads.firstUnread(), ["list"]);
    for (const item of reads.doc.list) assert.equal(typeof item.x, "number");
    assert.deepEqual(reads.firstUnread(), ["list", 1, "y"]);
    assert.equal(tomlKeyName(["list", 1, "y"]), "list[1].y");
  });

  it("counts every key of a table the parser enumerates, and leaves dates and arrays usable", () => {
    const when = new Date("2026-01-02T03:04:05Z");
    const reads = trackKeyReads({ env: { A: "1", B: "2" }, at: when, tags: ["x", "y"] });
    assert.deepEqual(Object.entries(reads.doc.env), [
      ["A", "1"],
      ["B", "2"],
    ]);
    assert.equal((reads.doc.at as Date).getTime(), when.getTime());
    assert.ok(Array.isArray(reads.doc.tags) && reads.doc.tags.every((t) => typeof t === "string"));
    assert.equal(reads.firstUnread(), undefined);
  });
});
