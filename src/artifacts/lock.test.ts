import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { LOCK_FILE, parseLock, readLock, writeLock } from "./lock.js";

describe("tabbify.lock", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tabbify-lock-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is absent before the first push", async () => {
    assert.equal(await readLock(dir), null);
  });

  it("round-trips and leaves no temp files behind", async () => {
    const lock = { appId: "0191e7c2-1111-7222-8333-444455556666", latestVersion: 3 };
    await writeLock(dir, lock);
    assert.deepEqual(await readLock(dir), lock);
    assert.deepEqual(await readdir(dir), [LOCK_FILE]);
    const text = await readFile(join(dir, LOCK_FILE), "utf8");
    assert.match(text, /^app_id = "0191e7c2-1111-7222-8333-444455556666"$/m);
    assert.match(text, /^latest_version = 3$/m);
  });

  it("defaults latest_version to 0 and lowercases the id", () => {
    assert.deepEqual(parseLock(`app_id = "0191E7C2-1111-7222-8333-444455556666"\n`), {
      appId: "0191e7c2-1111-7222-8333-444455556666",
      latestVersion: 0,
    });
  });

  it("rejects a malformed lock with a code and the file name", async () => {
    await writeFile(join(dir, LOCK_FILE), `app_id = "not-a-uuid"\n`);
    await assert.rejects(
      readLock(dir),
      (err) => isTabbifyError(err, "LOCK_INVALID") && err.message.includes(LOCK_FILE),
    );
    assert.throws(
      () => parseLock(`app_id = "0191e7c2-1111-7222-8333-444455556666"\nlatest_version = -1\n`),
      (err) => isTabbifyError(err, "LOCK_INVALID"),
    );
    assert.throws(
      () => parseLock(`app_id = `),
      (err) => isTabbifyError(err, "LOCK_INVALID"),
    );
  });
});
