/**
 * README claims that had no test: `tabbify registry gc` exits 1 naming REGISTRY_DATA_MISSING for
 * a --data that is not there, and GC_MANIFEST_UNREADABLE (deleting nothing) when a stored
 * manifest does not parse.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { LocalDriver } from "../src/storage/local.js";
import { tabbifyEntry } from "./runtime-plane-support.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function gc(data: string): { status: number | null; stderr: string } {
  const run = spawnSync(
    process.execPath,
    [tabbifyEntry, "registry", "gc", "--data", data, "--min-age", "0s"],
    {
      encoding: "utf8",
      env: { ...process.env, REGISTRY_DATA_DIR: "" },
    },
  );
  return { status: run.status, stderr: run.stderr };
}

describe("tabbify registry gc failures", () => {
  test("a --data that is not there exits 1 with REGISTRY_DATA_MISSING", () => {
    const missing = join(tmpdir(), `tbf-no-registry-${process.pid}-${Date.now()}`);
    const run = gc(missing);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /REGISTRY_DATA_MISSING/);
    assert.ok(!existsSync(missing), "gc created nothing");
  });

  test("a manifest that does not parse exits 1 with GC_MANIFEST_UNREADABLE and deletes nothing", async () => {
    const data = mkdtempSync(join(tmpdir(), "tbf-gc-bad-"));
    dirs.push(data);
    const driver = new LocalDriver(data);
    const junk = Buffer.from("not a manifest");
    const hex = createHash("sha256").update(junk).digest("hex");
    await driver.putContent(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, junk);
    await driver.putContent(`repositories/acme/app/_manifests/revisions/sha256/${hex}/link`, `sha256:${hex}`);
    const orphan = Buffer.from("an unreferenced blob");
    const orphanHex = createHash("sha256").update(orphan).digest("hex");
    const orphanPath = `blobs/sha256/${orphanHex.slice(0, 2)}/${orphanHex}/data`;
    await driver.putContent(orphanPath, orphan);
    const run = gc(data);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /GC_MANIFEST_UNREADABLE/);
    assert.ok(existsSync(join(data, orphanPath)), "nothing was deleted");
  });
});
