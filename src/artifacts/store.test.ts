import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import type { ExclusiveCreateScope } from "../storage/driver.js";
import { LocalDriver } from "../storage/local.js";
import { ArtifactStore, latestKey, versionKey } from "./store.js";

const record = { claimedAt: "2026-01-01T00:00:00.000Z", by: "test" };
const manifest = (id: string) => `[app]\nid = "${id}"\nname = "t"\n[lifecycle]\nmode = "on_request"\n`;

/** The local driver, pretending its exclusive create reaches no further than this object. */
class InstanceScopedDriver extends LocalDriver {
  override async exclusiveCreateScope(): Promise<ExclusiveCreateScope> {
    return "instance";
  }
  override async putContentIfAbsent(): Promise<boolean> {
    throw new Error("an instance-scoped create must not be trusted across processes");
  }
}

describe("ArtifactStore", () => {
  let root: string;
  let n = 0;
  const freshId = () => `0191e7c2-1111-7222-8333-${String(++n).padStart(12, "0")}`;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "tabbify-store-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Writes a complete version the way tcli push does: files, manifest, then latest. */
  async function publish(store: ArtifactStore, id: string, version: number, files: Record<string, string>) {
    for (const [path, content] of Object.entries(files)) await store.putContent(id, version, path, content);
    await store.putContent(id, version, "manifest.toml", manifest(id));
    return store.publishLatest(id, version);
  }

  it("hands out each version number once to parallel claimers", async () => {
    const store = new ArtifactStore(new LocalDriver(root));
    const id = freshId();
    const got = await Promise.all(Array.from({ length: 8 }, () => store.claimVersion(id, 1, record)));
    assert.deepEqual(
      [...got].sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.equal(await store.claimVersion(id, 3, record), 9, "a claim starting low moves past taken numbers");
  });

  it("claims exclusively by listing when the driver's create is instance-scoped", async () => {
    const id = freshId();
    // One store object per claimer: nothing in-process serializes them.
    const claimers = Array.from({ length: 6 }, () => new ArtifactStore(new InstanceScopedDriver(root)));
    const got = await Promise.all(claimers.map((s) => s.claimVersion(id, 1, record)));
    assert.equal(new Set(got).size, got.length, `duplicate versions: ${got.join(",")}`);
    const claimed = await new LocalDriver(root).list(`apps/${id}/.claims/v${Math.min(...got)}`);
    assert.equal(claimed.length, 1, "exactly the winner's marker stays");
    for (const v of got) {
      assert.ok(await new LocalDriver(root).stat(versionKey(id, v, ".claim")), `v${v} has its .claim`);
    }
  });

  it("serves a published version to readers, without the claim marker", async () => {
    const store = new ArtifactStore(new LocalDriver(root));
    const id = freshId();
    assert.equal(await store.latestVersion(id), null);
    const v = await store.claimVersion(id, 1, record);
    assert.equal(await publish(store, id, v, { "server.js": "ok", "lib/util.js": "u" }), 1);
    assert.equal(await store.latestVersion(id), 1);
    assert.deepEqual(await store.listFiles(id, 1), [
      { path: "lib/util.js", size: 1 },
      { path: "manifest.toml", size: Buffer.byteLength(manifest(id)) },
      { path: "server.js", size: 2 },
    ]);
    assert.equal((await store.readManifest(id, 1)).manifest.app.id, id);
    assert.equal(await text(await store.fetchFile(id, 1, "lib/util.js")), "u");
    assert.deepEqual(await store.versions(id), [1]);
    await assert.rejects(store.fetchFile(id, 1, "missing.js"), (err) =>
      isTabbifyError(err, "ARTIFACT_NOT_FOUND"),
    );
    await assert.rejects(store.readManifest(id, 2), (err) => isTabbifyError(err, "ARTIFACT_NOT_FOUND"));
    await assert.rejects(store.fetchFile(id, 1, "../v2/x"), (err) => isTabbifyError(err, "PATH_INVALID"));

    const dest = join(root, "download", id);
    const got = await store.downloadVersion(id, 1, dest);
    assert.equal(got.files.length, 3);
    assert.equal(await readFile(join(dest, "lib", "util.js"), "utf8"), "u");
    assert.deepEqual(await readdir(join(root, "download")), [id], "no partial directory is left");
  });

  it("refuses to publish an incomplete version, and never moves latest backwards", async () => {
    const store = new ArtifactStore(new LocalDriver(root));
    const id = freshId();
    const [a, b] = await Promise.all([store.claimVersion(id, 1, record), store.claimVersion(id, 1, record)]);
    assert.deepEqual([a, b].sort(), [1, 2]);
    await assert.rejects(store.publishLatest(id, 2), /manifest is not uploaded/);
    assert.equal(await store.latestVersion(id), null, "latest is untouched by the refused publish");
    assert.equal(await publish(store, id, 2, {}), 2);
    // v1 finishes after v2: latest stays at 2.
    assert.equal(await publish(store, id, 1, {}), 2);
    assert.equal(await store.latestVersion(id), 2);
  });

  it("withdraws latest from a version that failed to start, and never publishes it again", async () => {
    const store = new ArtifactStore(new LocalDriver(root));
    const id = freshId();
    for (const v of [1, 2, 3]) await store.claimVersion(id, v, record);
    assert.equal(await publish(store, id, 1, {}), 1);
    assert.equal(await publish(store, id, 2, {}), 2);
    assert.equal(await store.withdrawLatest(id, 2), 1, "back on the version before");
    assert.equal(await store.latestVersion(id), 1);
    assert.equal(await store.isWithdrawn(id, 2), true);
    assert.deepEqual(await store.versions(id), [1, 2], "the withdrawn version stays in the store");
    // A slow publisher of v1 re-checking for higher complete versions does not put v2 back.
    assert.equal(await store.publishLatest(id, 1), 1);
    assert.equal(await publish(store, id, 3, {}), 3);
    // A withdrawal that comes after a later push published leaves latest where it is.
    assert.equal(await store.withdrawLatest(id, 2), 3);
    // Withdrawing the only good versions leaves no latest at all.
    const lone = freshId();
    await store.claimVersion(lone, 1, record);
    await publish(store, lone, 1, {});
    assert.equal(await store.withdrawLatest(lone, 1), null);
    assert.equal(await store.latestVersion(lone), null);
  });

  it("repairs latest when a lower publisher overwrote a higher one", async () => {
    const driver = new LocalDriver(root);
    const store = new ArtifactStore(driver);
    const id = freshId();
    await store.claimVersion(id, 1, record);
    await store.claimVersion(id, 2, record);
    await store.putContent(id, 2, "manifest.toml", manifest(id));
    await store.putContent(id, 1, "manifest.toml", manifest(id));
    // The interleaving publishLatest guards against: v2's publisher wrote, then v1's stale write landed.
    await driver.putContent(latestKey(id), "1");
    assert.equal(await store.publishLatest(id, 1), 2);
    assert.equal((await driver.getContent(latestKey(id)))?.toString(), "2");
  });

  it("rejects a corrupt latest and ids that are not lowercase UUIDs", async () => {
    const driver = new LocalDriver(root);
    const store = new ArtifactStore(driver);
    const id = freshId();
    await driver.putContent(latestKey(id), "v3");
    await assert.rejects(store.latestVersion(id), (err) => isTabbifyError(err, "ARTIFACT_CORRUPT"));
    await assert.rejects(store.latestVersion("../etc"), (err) => isTabbifyError(err, "APP_ID_INVALID"));
  });

  it("streams large files through staging and notices a file that changed size", async () => {
    const staging = join(root, "staging");
    const store = new ArtifactStore(new LocalDriver(root), { stagingDir: staging });
    const id = freshId();
    const big = join(root, "big.bin");
    await writeFile(big, Buffer.alloc(3 * 1024 * 1024, 7));
    await store.putFile(id, 1, "big.bin", big, 3 * 1024 * 1024);
    await assert.rejects(store.listFiles(id, 1), (err) => isTabbifyError(err, "ARTIFACT_NOT_FOUND"));
    await store.putContent(id, 1, "manifest.toml", manifest(id));
    assert.deepEqual(await store.listFiles(id, 1), [
      { path: "big.bin", size: 3 * 1024 * 1024 },
      { path: "manifest.toml", size: Buffer.byteLength(manifest(id)) },
    ]);
    assert.deepEqual(await readdir(staging), [], "staged copies are consumed");
    assert.equal((await readFile(big)).length, 3 * 1024 * 1024, "the source is left in place");
    await assert.rejects(store.putFile(id, 1, "big2.bin", big, 100), (err) =>
      isTabbifyError(err, "FILE_CHANGED"),
    );
    await assert.rejects(store.putFile(id, 1, "big3.bin", big, 5 * 1024 * 1024), (err) =>
      isTabbifyError(err, "FILE_CHANGED"),
    );
  });

  it("discards a failed push's files but its claim, and sweeps only old abandoned versions", async () => {
    const driver = new LocalDriver(root);
    const store = new ArtifactStore(driver);
    const id = freshId();
    const v1 = await store.claimVersion(id, 1, record);
    await store.putContent(id, v1, "server.js", "half");
    await store.putContent(id, v1, "lib/util.js", "half");
    await assert.rejects(store.fetchFile(id, v1, "server.js"), (err) =>
      isTabbifyError(err, "ARTIFACT_NOT_FOUND"),
    );
    await store.discardVersion(id, v1);
    assert.deepEqual(await driver.list(`apps/${id}/v${v1}`), [".claim"]);

    // A push killed long ago (v2) and one still running (v3): only the old one is swept.
    const old = { claimedAt: "2026-01-01T00:00:00.000Z", by: "killed" };
    const v2 = await store.claimVersion(id, 2, old);
    await store.putContent(id, v2, "server.js", "left behind");
    const v3 = await store.claimVersion(id, 3, { claimedAt: new Date().toISOString(), by: "live" });
    await store.putContent(id, v3, "server.js", "in flight");
    const now = new Date("2026-01-03T00:00:00.000Z");
    assert.deepEqual(await store.sweepAbandoned(id, { now }), [v2]);
    assert.deepEqual(await driver.list(`apps/${id}/v${v2}`), [".claim"]);
    assert.deepEqual(await driver.list(`apps/${id}/v${v3}`), [".claim", "server.js"]);

    await store.putContent(id, v3, "manifest.toml", manifest(id));
    await assert.rejects(store.discardVersion(id, v3), /it is complete/);
  });

  it("gives a failed push's number back, unless a higher one is claimed or it is complete", async () => {
    for (const driver of [new LocalDriver(root), new InstanceScopedDriver(root)]) {
      const store = new ArtifactStore(driver);
      const id = freshId();
      await publish(store, id, await store.claimVersion(id, 1, record), { "a.js": "1" });
      const failed = await store.claimVersion(id, 2, record);
      assert.equal(failed, 2);
      await store.putContent(id, failed, "a.js", "half");
      assert.equal(await store.releaseClaim(id, failed), false, "not while files are staged");
      await store.discardVersion(id, failed);
      assert.equal(await store.releaseClaim(id, failed), true);
      assert.equal(await store.claimVersion(id, 2, record), 2, "the next push takes the same number");
      await store.discardVersion(id, 2);
      const later = await store.claimVersion(id, 3, record);
      assert.equal(await store.releaseClaim(id, 2), false, "a higher claim exists: 2 stays skipped");
      assert.equal(await store.claimVersion(id, 2, record), later + 1);
      assert.equal(await store.releaseClaim(id, 1), false, "a complete version is never released");
      assert.equal(await store.latestVersion(id), 1);
    }
  });
});
