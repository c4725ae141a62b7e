import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { openStore } from "../store/index.js";
import { bodyDigest, FileReplayGuard, SqlReplayGuard } from "./replay-guard.js";

describe("FileReplayGuard", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const fresh = async () => {
    const d = await mkdtemp(join(tmpdir(), "tabbify-replay-guard-"));
    dirs.push(d);
    return d;
  };

  it("remembers each digest once, also for racing callers, and across a reopen", async () => {
    const dir = await fresh();
    const guard = await FileReplayGuard.open(dir);
    const d = bodyDigest(Buffer.from('{"after":"x"}'));
    assert.equal(await guard.seen(d), false);
    const racing = await Promise.all(Array.from({ length: 5 }, () => guard.remember(d)));
    assert.deepEqual(racing.filter(Boolean).length, 1);
    assert.equal(await guard.seen(d), true);
    await guard.close();
    assert.equal((await stat(guard.path)).mode & 0o777, 0o600);

    // A crash tore a line in half: it is skipped, and later digests still land on their own line.
    await appendFile(guard.path, "abc123");
    const reopened = await FileReplayGuard.open(dir);
    assert.equal(await reopened.seen(d), true);
    const e = bodyDigest(Buffer.from("other"));
    assert.equal(await reopened.remember(e), true);
    await reopened.close();
    const again = await FileReplayGuard.open(dir);
    assert.equal(await again.seen(e), true);
    assert.equal(await again.seen("abc123"), false);
    await again.close();
    assert.match(await readFile(guard.path, "utf8"), new RegExp(`\\n${e}\\n`));
  });

  it("refuses what is not a digest", async () => {
    const guard = await FileReplayGuard.open(await fresh());
    await assert.rejects(guard.remember("not-a-digest"), /64 lowercase hex/);
    await guard.close();
  });
});

describe("SqlReplayGuard", () => {
  it("remembers each digest once (racing callers too), and imports a file guard's digests once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tabbify-sql-replay-"));
    try {
      const old = await FileReplayGuard.open(dir);
      const imported = bodyDigest(Buffer.from("from the file"));
      await old.remember(imported);
      await old.close();
      const store = await openStore({ engine: "sqlite", file: join(dir, "node.db") });
      try {
        const guard = await SqlReplayGuard.open(store, dir);
        assert.equal(await guard.seen(imported), true, "the file's digest was imported");
        await assert.rejects(stat(join(dir, "webhook-bodies.log")), /ENOENT/);
        const d = bodyDigest(Buffer.from('{"after":"y"}'));
        assert.equal(await guard.seen(d), false);
        const racing = await Promise.all(Array.from({ length: 5 }, () => guard.remember(d)));
        assert.equal(racing.filter(Boolean).length, 1);
        assert.equal(await guard.remember(imported), false);
        await assert.rejects(guard.remember("nope"), /64 lowercase hex/);
        const reopened = await SqlReplayGuard.open(store, dir);
        assert.equal(await reopened.seen(d), true);
      } finally {
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
