// A 2 GiB blob pushed and pulled through a spawned registry: bodies stream both ways, so the
// process's RSS stays far below the blob's size (issue 2: peak under 200 MB), and the digest
// survives the round trip. The blob is generated as a stream and never held in memory.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import {
  call,
  patternChunks,
  sampleRss,
  spawnRegistry,
  streamDigest,
  streamRequest,
} from "./registry-helpers.js";

const mib = 2048;
const rssLimit = 200 * 1024 * 1024;

it("pushes and pulls 2 GiB with peak RSS under 200 MB", { timeout: 240_000 }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-stream-"));
  const registry = await spawnRegistry(dataDir);
  try {
    const rss = sampleRss(registry.pid);
    const hash = createHash("sha256");
    const pushStarted = Date.now();
    const start = await call(registry.url, "/v2/stream/big/blobs/uploads/", { method: "POST" });
    const patch = await streamRequest(
      registry.url,
      "PATCH",
      start.headers.get("location")!,
      patternChunks(mib),
      {
        onChunk: (c) => hash.update(c),
      },
    );
    assert.equal(patch.status, 202, patch.body);
    assert.equal(patch.headers.range, `0-${mib * 1024 * 1024 - 1}`);
    const digest = `sha256:${hash.digest("hex")}`;
    const put = await call(registry.url, `${patch.headers.location}?digest=${digest}`, { method: "PUT" });
    assert.equal(put.status, 201, put.body.toString());
    const pushSeconds = (Date.now() - pushStarted) / 1000;

    const pullStarted = Date.now();
    const pulled = await streamDigest(registry.url, `/v2/stream/big/blobs/${digest}`);
    const pullSeconds = (Date.now() - pullStarted) / 1000;
    const peak = rss.stop();
    assert.equal(pulled.status, 200);
    assert.equal(pulled.size, mib * 1024 * 1024);
    assert.equal(pulled.digest, digest);
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    process.stdout.write(
      `# 2 GiB: push ${pushSeconds.toFixed(1)} s (${(mib / pushSeconds).toFixed(0)} MiB/s), pull ${pullSeconds.toFixed(1)} s (${(mib / pullSeconds).toFixed(0)} MiB/s), registry peak RSS ${mb(peak)} MB\n`,
    );
    assert.ok(peak < rssLimit, `peak RSS ${mb(peak)} MB is over ${mb(rssLimit)} MB`);
  } finally {
    await registry.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});
