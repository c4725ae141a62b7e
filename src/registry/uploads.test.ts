import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { LocalDriver } from "../storage/local.js";
import { RegistryService } from "./repository.js";
import { UploadStore } from "./uploads.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tabbify-uploads-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function digestOf(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

describe("upload sessions", () => {
  it("resume after a restart: the running hash is rebuilt from the staged file", async () => {
    const driver = new LocalDriver(join(dir, "resume"));
    const staging = join(driver.tmpDir, "uploads");
    const data = Buffer.from("first half|second half");
    const before = new RegistryService({ driver, stagingDir: staging });
    const session = await before.startUpload("resume/app");
    await before.appendUpload("resume/app", session.id, Readable.from([data.subarray(0, 11)]), {
      start: 0,
      end: 10,
    });
    // A new service instance has no in-memory hash: as after a process restart.
    const after = new RegistryService({ driver, stagingDir: staging });
    const status = await after.uploadStatus("resume/app", session.id);
    assert.equal(status.size, 11);
    await assert.rejects(
      after.appendUpload("resume/app", session.id, Readable.from([data.subarray(0, 11)]), {
        start: 0,
        end: 10,
      }),
      { code: "RANGE_INVALID" },
    );
    await after.appendUpload("resume/app", session.id, Readable.from([data.subarray(11)]), { start: 11 });
    const done = await after.finishUpload("resume/app", session.id, digestOf(data));
    assert.equal(done.size, data.length);
    const blob = await after.openBlob("resume/app", digestOf(data));
    const chunks: Buffer[] = [];
    for await (const c of blob.stream) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), data);
    assert.deepEqual(await readdir(staging), []);
  });

  it("a failed body (client gone) is cut back off, so the upload resumes from a clean offset", async () => {
    const store = new UploadStore(join(dir, "aborted"), 60_000);
    const session = await store.create("a/b");
    await store.append("a/b", session.id, Readable.from([Buffer.from("0123")]));
    const failing = new Readable({
      read() {
        this.push(Buffer.from("garbage"));
        this.destroy(new Error("client went away"));
      },
    });
    await assert.rejects(store.append("a/b", session.id, failing), /client went away/);
    assert.equal((await store.status("a/b", session.id)).size, 4);
    await store.append("a/b", session.id, Readable.from([Buffer.from("4567")]));
    const { size } = await store.finish("a/b", session.id, {
      algorithm: "sha256",
      hex: createHash("sha256").update("01234567").digest("hex"),
    });
    assert.equal(size, 8);
  });

  it("cleanupStale removes sessions untouched for longer than the stale age, and only those", async () => {
    const stagingDir = join(dir, "stale");
    const store = new UploadStore(stagingDir, 60_000);
    const old = await store.create("a/b");
    const fresh = await store.create("a/b");
    const past = new Date(Date.now() - 120_000);
    await utimes(store.dataFile(old.id), past, past);
    assert.equal(await store.cleanupStale(), 1);
    assert.deepEqual(await readdir(stagingDir), [fresh.id]);
    await assert.rejects(store.status("a/b", old.id), { code: "BLOB_UPLOAD_UNKNOWN" });
  });
});
