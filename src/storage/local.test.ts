import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
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
