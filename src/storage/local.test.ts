import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { storageDriverSuite } from "./driver-suite.js";
import { type FileRangeStream, LocalDriver } from "./local.js";

storageDriverSuite("local", async () => {
  const root = await mkdtemp(join(tmpdir(), "tabbify-local-driver-"));
  return {
    driver: new LocalDriver(root),
    twin: async () => new LocalDriver(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

test("local driver: a reader slower than the disk gets whole blocks it can recycle", async () => {
  const root = await mkdtemp(join(tmpdir(), "tabbify-local-recycle-"));
  try {
    const driver = new LocalDriver(root);
    const block = 1024 * 1024;
    const content = randomBytes(8 * block + 100);
    await driver.putContent("blob", content);
    const stream = (await driver.read("blob")) as FileRangeStream;
    const sizes: number[] = [];
    const memory = new Set<ArrayBufferLike>();
    const received: Buffer[] = [];
    for await (const c of stream) {
      const chunk = c as Buffer;
      sizes.push(chunk.length);
      memory.add(chunk.buffer);
      received.push(Buffer.from(chunk));
      // Like a socket slower than the disk: the read-ahead finishes before the chunk comes back.
      await sleep(5);
      stream.recycle(chunk);
    }
    // A merged chunk (Buffer.concat of two blocks) would be a copy `recycle` cannot reuse.
    assert.deepEqual(sizes, [...Array<number>(8).fill(block), 100]);
    assert.ok(Buffer.concat(received).equals(content));
    // The block being consumed, the one read ahead, and the tail's own small buffer.
    assert.ok(memory.size <= 3, `${memory.size} distinct buffers for 9 chunks: blocks were not reused`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("local driver: dirs 0700 and files 0600 under umask 000, an ingested 0644 file included", async () => {
  const root = join(await mkdtemp(join(tmpdir(), "tabbify-local-modes-")), "store");
  const previous = process.umask(0);
  try {
    const driver = new LocalDriver(root);
    await driver.putContent("apps/a/v1/manifest.toml", "x");
    await driver.putContentIfAbsent("apps/a/latest", "1");
    const staged = join(root, "..", "user-file");
    await writeFile(staged, "big", { mode: 0o644 });
    await chmod(staged, 0o755);
    await driver.ingest("apps/a/v1/bin/run", staged, 3);
    const loose: string[] = [];
    const walk = async (path: string) => {
      const info = await lstat(path);
      const want = info.isDirectory() ? 0o700 : 0o600;
      if ((info.mode & 0o777) !== want) loose.push(`${path} ${(info.mode & 0o777).toString(8)}`);
      if (info.isDirectory()) for (const e of await readdir(path)) await walk(join(path, e));
    };
    await walk(root);
    assert.deepEqual(loose, []);
  } finally {
    process.umask(previous);
    await rm(join(root, ".."), { recursive: true, force: true });
  }
});
