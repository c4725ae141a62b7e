/**
 * A `tcli push` that fails halfway publishes nothing: the version's files are staged under
 * `v<N>/`, invisible to readers until its manifest lands, removed when the push fails, and swept
 * by a later push when a killed push left them. Runs the real push code against the local store
 * and a real S3-compatible server (s3rver), through a driver that starts failing after N writes.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ArtifactStore, versionKey } from "../../src/artifacts/store.js";
import type { DockerClient } from "../../src/cli/docker.js";
import { pushApp } from "../../src/cli/push.js";
import type { ByteRange, ExclusiveCreateScope, FileInfo, StorageDriver } from "../../src/storage/driver.js";
import { LocalDriver } from "../../src/storage/local.js";
import { S3Driver } from "../../src/storage/s3.js";
import { type S3rverHandle, startS3rver } from "../support/s3rver.js";
import { tempDir } from "../support/tools.js";

/** A driver that fails every write of an app file after the first `allowed` ones (claims pass). */
class FailingDriver implements StorageDriver {
  readonly name: string;
  #writes = 0;
  constructor(
    private readonly inner: StorageDriver,
    private readonly allowed: number,
  ) {
    this.name = `failing(${inner.name})`;
  }
  #count(path: string): void {
    if (path.includes("/.claim")) return;
    if (++this.#writes > this.allowed)
      throw new Error(`injected store failure at write ${this.#writes}: ${path}`);
  }
  stat(path: string): Promise<FileInfo | null> {
    return this.inner.stat(path);
  }
  read(path: string, range?: ByteRange): Promise<Readable> {
    return this.inner.read(path, range);
  }
  getContent(path: string): Promise<Buffer | null> {
    return this.inner.getContent(path);
  }
  async putContent(path: string, content: Buffer | string): Promise<void> {
    this.#count(path);
    return this.inner.putContent(path, content);
  }
  putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean> {
    return this.inner.putContentIfAbsent(path, content);
  }
  exclusiveCreateScope(): Promise<ExclusiveCreateScope> {
    return this.inner.exclusiveCreateScope();
  }
  async ingest(path: string, localFile: string, size: number): Promise<void> {
    this.#count(path);
    return this.inner.ingest(path, localFile, size);
  }
  list(path: string): Promise<string[]> {
    return this.inner.list(path);
  }
  delete(path: string): Promise<void> {
    return this.inner.delete(path);
  }
}

const noDocker: DockerClient = {
  build: () => Promise.reject(new Error("a process app must not call docker")),
  saveGzipped: () => Promise.reject(new Error("a process app must not call docker")),
};

/** Every key under `prefix`, recursively, as the driver lists them. */
async function keys(driver: StorageDriver, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await driver.list(prefix)) {
    const key = `${prefix}/${name}`;
    if (await driver.stat(key)) out.push(key.slice(prefix.length + 1));
    else out.push(...(await keys(driver, key)).map((k) => `${name}/${k}`));
  }
  return out.sort();
}

interface OpenedDriver {
  driver: StorageDriver;
  stagingDir?: string;
  close(): Promise<void>;
}

function suite(label: string, open: () => Promise<OpenedDriver>) {
  describe(`a push that fails halfway publishes nothing (${label})`, () => {
    let tmp: { path: string; remove(): Promise<void> };
    let app: string;
    let driver: StorageDriver;
    let stagingDir: string | undefined;
    let opened: OpenedDriver;
    const appId = "0191e7c2-1111-7222-8333-0000000000aa";

    before(async () => {
      tmp = await tempDir("tabbify-push-staging");
      opened = await open();
      ({ driver, stagingDir } = opened);
      app = join(tmp.path, "app");
      await mkdir(join(app, "lib"), { recursive: true });
      await writeFile(
        join(app, "manifest.toml"),
        `[app]\nid = "${appId}"\nname = "half"\n[lifecycle]\nmode = "always_on"\n[runtime]\ntype = "process"\ncommand = ["node", "server.js"]\n`,
      );
      for (let i = 0; i < 12; i++) await writeFile(join(app, "lib", `f${i}.js`), `export const n = ${i};\n`);
      // Above the in-memory limit: goes through staging and ingest.
      await writeFile(join(app, "big.bin"), Buffer.alloc(2 * 1024 * 1024, 1));
      await writeFile(join(app, "server.js"), "console.log('v');\n");
    });
    after(async () => {
      await opened?.close();
      await tmp?.remove();
    });

    const push = (store: ArtifactStore) =>
      pushApp({
        dir: app,
        store,
        storeName: label,
        nodeUrl: "http://127.0.0.1:8090",
        dryRun: false,
        docker: noDocker,
        ...(stagingDir ? { stagingDir } : {}),
      });

    it("a store failing after 5 writes leaves no version and no file visible; the next push works", async () => {
      const store = new ArtifactStore(driver, stagingDir ? { stagingDir } : {});
      const first = await push(store);
      assert.equal(first.version, 1);

      const failing = new ArtifactStore(new FailingDriver(driver, 5), stagingDir ? { stagingDir } : {});
      await assert.rejects(push(failing), /injected store failure/);
      assert.equal(await store.latestVersion(appId), 1, "latest still names the last complete version");
      assert.deepEqual(await store.versions(appId), [1]);
      assert.deepEqual(
        await keys(driver, versionKey(appId, 2, "").slice(0, -1)),
        [],
        "the failed push gives its claim back and leaves nothing",
      );
      await assert.rejects(store.listFiles(appId, 2), /no complete version 2/);
      await assert.rejects(store.fetchFile(appId, 2, "server.js"), /no complete version 2/);

      const again = await push(store);
      assert.equal(again.version, 2, "the failed push used up no version number");
      assert.equal(again.latest, 2);
      assert.equal((await store.listFiles(appId, 2)).length, 15);
    });

    it("files a killed push left behind stay invisible and are swept by the next push", async () => {
      const store = new ArtifactStore(driver, stagingDir ? { stagingDir } : {});
      const killedAt = { claimedAt: new Date(Date.now() - 2 * 24 * 3600 * 1000).toISOString(), by: "killed" };
      const dead = await store.claimVersion(appId, 1, killedAt);
      await store.putContent(appId, dead, "server.js", "half a push");
      await assert.rejects(store.fetchFile(appId, dead, "server.js"), /no complete version/);
      assert.notEqual(await store.latestVersion(appId), dead);

      const next = await push(store);
      assert.equal(next.latest, next.version);
      assert.deepEqual(await keys(driver, versionKey(appId, dead, "").slice(0, -1)), [".claim"]);
    });
  });
}

suite("local store", async () => {
  const dir = await tempDir("tabbify-push-staging-store");
  const driver = new LocalDriver(dir.path);
  return { driver, stagingDir: driver.tmpDir, close: () => dir.remove() };
});

suite("S3 store (s3rver)", async () => {
  const s3: S3rverHandle = await startS3rver(["artifacts"]);
  Object.assign(process.env, s3.credentialsEnv);
  const driver = new S3Driver({ bucket: "artifacts", endpoint: s3.endpoint, forcePathStyle: true });
  return {
    driver,
    close: async () => {
      driver.close();
      await s3.stop();
    },
  };
});
