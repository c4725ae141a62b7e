import assert from "node:assert/strict";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pathExists } from "./exists.js";

describe("pathExists", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tabbify-exists-"));
  after(() => rm(dir, { recursive: true, force: true }));

  it("is true for a file and a directory", async () => {
    await writeFile(join(dir, "file"), "x");
    assert.equal(await pathExists(join(dir, "file")), true);
    assert.equal(await pathExists(dir), true);
  });

  it("is false for a missing path and a dangling symlink, and never throws", async () => {
    assert.equal(await pathExists(join(dir, "missing")), false);
    assert.equal(await pathExists(join(dir, "missing", "deeper")), false);
    await symlink(join(dir, "nowhere"), join(dir, "dangling"));
    assert.equal(await pathExists(join(dir, "dangling")), false);
  });
});
