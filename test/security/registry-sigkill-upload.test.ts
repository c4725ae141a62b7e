// Held when issue 9 was filed, kept as a regression test: a registry SIGKILLed in the middle of
// an upload, then restarted on the same data dir, shows no partial blob, and the client can start
// over (issue 2 §2: uploads are staged, then committed atomically).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { call, patternChunks, spawnRegistry, streamRequest } from "../registry-helpers.js";

const mib = 256;

it("SIGKILL mid-upload leaves no partial blob; a fresh upload after restart succeeds", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "tabbify-registry-restart-"));
  try {
    const hash = createHash("sha256");
    for (const chunk of patternChunks(mib)) hash.update(chunk);
    const digest = `sha256:${hash.digest("hex")}`;

    const first = await spawnRegistry(dataDir);
    const start = await call(first.url, "/v2/restart/app/blobs/uploads/", { method: "POST" });
    assert.equal(start.status, 202);
    const location = start.headers.get("location")!;
    let sent = 0;
    let killed = false;
    const upload = streamRequest(first.url, "PATCH", location, patternChunks(mib), {
      onChunk: (c) => {
        sent += c.length;
        if (!killed && sent >= 64 * 1024 * 1024) {
          killed = true;
          first.child.kill("SIGKILL");
        }
      },
    });
    await assert.rejects(upload, "the upload dies with the registry");
    await first.stop();
    assert.equal(first.child.signalCode, "SIGKILL");

    const second = await spawnRegistry(dataDir);
    try {
      const head = await call(second.url, `/v2/restart/app/blobs/${digest}`, { method: "HEAD" });
      assert.equal(head.status, 404, "no partial blob is visible");
      // The old session is not a blob either way: unknown, or reporting only what it received.
      const status = await call(second.url, location);
      assert.ok(status.status === 404 || status.status === 204);
      const tags = await call(second.url, "/v2/restart/app/tags/list");
      assert.ok(tags.status === 404 || tags.status === 200);

      const retry = await streamRequest(
        second.url,
        "POST",
        `/v2/restart/app/blobs/uploads/?digest=${digest}`,
        patternChunks(mib),
      );
      assert.equal(retry.status, 201, retry.body);
      const after = await call(second.url, `/v2/restart/app/blobs/${digest}`, { method: "HEAD" });
      assert.equal(after.status, 200);
      assert.equal(after.headers.get("content-length"), String(mib * 1024 * 1024));
    } finally {
      await second.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
