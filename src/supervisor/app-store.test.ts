import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseManifest } from "../artifacts/manifest.js";
import { ArtifactStore } from "../artifacts/store.js";
import { isTabbifyError } from "../core/errors.js";
import { LocalDriver } from "../storage/local.js";
import { AppStore, specFromManifest } from "./app-store.js";

const head = (id: string) => `[app]\nid = "${id}"\nname = "t"\n[lifecycle]\nmode = "always_on"\n`;
const LIFECYCLE = { mode: "always_on", idleTimeoutSec: 300 } as const;

describe("AppStore (the supervisor's view of the artifact store)", () => {
  let root: string;
  let store: ArtifactStore;
  let apps: AppStore;
  let n = 0;
  const freshId = () => `0191e7c2-1111-7222-8333-${String(++n).padStart(12, "0")}`;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "tabbify-app-store-"));
    const driver = new LocalDriver(join(root, "store"));
    store = new ArtifactStore(driver, { stagingDir: driver.tmpDir });
    apps = new AppStore(store, join(root, "cache"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function publish(id: string, version: number, manifest: string, files: Record<string, string>) {
    for (const [path, content] of Object.entries(files)) await store.putContent(id, version, path, content);
    await store.putContent(id, version, "manifest.toml", manifest);
    await store.publishLatest(id, version);
  }

  it("no app in the store is APP_NOT_FOUND with present:false", async () => {
    const id = freshId();
    await assert.rejects(apps.latest(id), (err) => {
      assert.ok(isTabbifyError(err, "APP_NOT_FOUND"));
      assert.deepEqual(err.detail, { uuid: id, present: false });
      return true;
    });
    assert.equal(await apps.latestOrNull(id), null);
  });

  it("a corrupt latest is a store failure (502), not a missing app", async () => {
    const id = freshId();
    await store.driver.putContent(`apps/${id}/latest`, "not a number");
    await assert.rejects(apps.latest(id), (err) => isTabbifyError(err, "ARTIFACT_STORE_FAILED"));
  });

  it("maps vcpus, fuel_per_request, stateful and data_mount onto the spec", async () => {
    const id = freshId();
    const manifest = `${head(id).replace('"always_on"', '"on_request"\nidle_timeout_sec = 7')}[runtime]\ntype = "wasm"\nentry = "m.wasm"\nfuel_per_request = 250000000\nvcpus = 2\nstateful = true\ndata_mount = "/state"\n`;
    await publish(id, 1, manifest, { "m.wasm": "\0asm" });
    const { spec } = await apps.fetch(id, 1);
    assert.deepEqual(spec.limits, { memoryMb: 64, timeoutMs: 250, vcpus: 2 });
    assert.deepEqual(spec.lifecycle, { mode: "on_request", idleTimeoutSec: 7 });
    assert.equal(spec.stateful, true);
    assert.equal(spec.dataMount, "/state");
    assert.equal(spec.dataDir, undefined, "the data directory is the supervisor's to choose");
  });

  it("a process app: every file fetched, the shipped program made executable, cache reused", async () => {
    const id = freshId();
    const manifest = `${head(id)}[runtime]\ntype = "process"\ncommand = ["./bin/app", "--serve"]\n[env]\nVERSION = "3"\n`;
    await publish(id, 1, manifest, { "bin/app": "#!/bin/sh\n", "data/x.txt": "x" });
    const fetched = await apps.fetch(id, await apps.latest(id));
    assert.equal(fetched.label, "v1");
    assert.equal(fetched.cacheDir, join(root, "cache", id, "v1"));
    assert.deepEqual(fetched.spec, {
      runtime: "process",
      artifactDir: fetched.cacheDir,
      command: ["./bin/app", "--serve"],
      limits: { memoryMb: 512 },
      env: { VERSION: "3" },
      lifecycle: LIFECYCLE,
    });
    assert.ok(((await stat(join(fetched.cacheDir, "bin", "app"))).mode & 0o111) !== 0);
    assert.deepEqual((await readdir(join(fetched.cacheDir, "data"))).sort(), ["x.txt"]);
    // A cached version is read from disk: with the app gone from the store, the fetch still works.
    await rm(join(root, "store", "apps", id), { recursive: true });
    const fromCache = await apps.fetch(id, 1);
    assert.deepEqual(fromCache.spec, fetched.spec);
  });

  it("a wasm app fetches only its entry; limits come from memory_mb", async () => {
    const id = freshId();
    const manifest = `${head(id)}[runtime]\ntype = "wasm"\nentry = "m.wasm"\nmemory_mb = 32\n`;
    await publish(id, 1, manifest, { "m.wasm": "\0asm", "other.txt": "not needed" });
    const fetched = await apps.fetch(id, 1);
    assert.deepEqual(fetched.spec, {
      runtime: "wasm",
      artifactDir: fetched.cacheDir,
      entry: "m.wasm",
      limits: { memoryMb: 32, timeoutMs: 1_000 },
      lifecycle: LIFECYCLE,
    });
    assert.deepEqual((await readdir(fetched.cacheDir)).sort(), ["m.wasm", "manifest.toml"]);
  });

  it("a docker build ships image.tar.gz, run as tbf-img-<uuid>-v<N>", async () => {
    const id = freshId();
    const manifest = `${head(id)}[runtime]\ntype = "docker"\nmemory_mb = 64\n[build]\nkind = "docker"\n`;
    await publish(id, 2, manifest, { "image.tar.gz": "gz", Dockerfile: "FROM scratch\n" });
    const fetched = await apps.fetch(id, 2);
    assert.deepEqual(fetched.spec, {
      runtime: "docker",
      image: `tbf-img-${id}-v2`,
      imageArchive: join(fetched.cacheDir, "image.tar.gz"),
      limits: { memoryMb: 64 },
      lifecycle: LIFECYCLE,
    });
    assert.deepEqual((await readdir(fetched.cacheDir)).sort(), ["image.tar.gz", "manifest.toml"]);
  });

  it("an invalid manifest in the store is MANIFEST_INVALID naming the key and line", async () => {
    const id = freshId();
    await publish(id, 1, `${head(id)}[runtime]\ntype = "cobol"\n`, {});
    await assert.rejects(apps.fetch(id, 1), (err) => {
      assert.ok(isTabbifyError(err, "MANIFEST_INVALID"));
      assert.match(err.message, new RegExp(`apps/${id}/v1/manifest.toml:7:1: .*cobol`));
      return true;
    });
  });

  it("a fixed [runtime] port cannot run here and says why", async () => {
    const id = freshId();
    const manifest = parseManifest(`${head(id)}[runtime]\ntype = "process"\ncommand = ["x"]\nport = 9000\n`);
    await assert.rejects(specFromManifest(id, 1, manifest, "/tmp"), /port = 9000 is not supported/);
  });

  it("prune keeps only the named versions; purge forgets the app", async () => {
    const id = freshId();
    const manifest = `${head(id)}[runtime]\ntype = "wasm"\nentry = "m.wasm"\n`;
    for (const v of [1, 2, 3]) await publish(id, v, manifest, { "m.wasm": "\0asm" });
    for (const v of [1, 2, 3]) await apps.fetch(id, v);
    await writeFile(join(root, "cache", id, "unrelated"), "kept");
    await apps.prune(id, new Set([3]));
    assert.deepEqual((await readdir(join(root, "cache", id))).sort(), ["unrelated", "v3"]);
    await apps.purge(id);
    await assert.rejects(readdir(join(root, "cache", id)), { code: "ENOENT" });
  });
});
