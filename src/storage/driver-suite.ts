/**
 * The one test suite every StorageDriver passes. A driver's test file calls
 * `storageDriverSuite(name, make)`; `make` returns a driver over fresh, empty storage.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { describe, type TestContext, test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { StorageDriver } from "./driver.js";

export interface DriverUnderTest {
  driver: StorageDriver;
  cleanup(): Promise<void>;
  /**
   * A second, independent driver over the same storage, standing in for another process (its
   * own client, its own in-process state). Without it the cross-instance race is not run.
   */
  twin?: () => Promise<StorageDriver>;
}

/** Size of the large-file test; `TABBIFY_TEST_LARGE_MIB` overrides it. */
const LARGE_MIB = Number(process.env.TABBIFY_TEST_LARGE_MIB ?? 64);

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isTabbifyError(err, code), `expected TabbifyError ${code}, got ${String(err)}`);
    return true;
  });
}

export function storageDriverSuite(name: string, make: () => Promise<DriverUnderTest>): void {
  /** Runs a test body against a fresh driver and a fresh staging dir, cleaning both up. */
  const withDriver =
    (body: (d: StorageDriver, staging: string, under: DriverUnderTest, t: TestContext) => Promise<void>) =>
    async (t: TestContext) => {
      const under = await make();
      const staging = await mkdtemp(join(tmpdir(), "tabbify-driver-suite-"));
      try {
        await body(under.driver, staging, under, t);
      } finally {
        await rm(staging, { recursive: true, force: true });
        await under.cleanup();
      }
    };

  describe(`storage driver: ${name}`, () => {
    test(
      "absent paths: stat and getContent are null, list is [], delete is a no-op, read throws PATH_NOT_FOUND",
      withDriver(async (d) => {
        assert.equal(await d.stat("nothing/here"), null);
        assert.equal(await d.getContent("nothing/here"), null);
        assert.deepEqual(await d.list("nothing"), []);
        assert.deepEqual(await d.list(""), []);
        await d.delete("nothing/here");
        await d.delete("nothing");
        await rejectsWithCode(d.read("nothing/here"), "PATH_NOT_FOUND");
        await rejectsWithCode(d.read("nothing/here", { start: 0, end: 1 }), "PATH_NOT_FOUND");
      }),
    );

    test(
      "putContent then stat, getContent, read; a second putContent replaces the content",
      withDriver(async (d) => {
        const before = Date.now();
        await d.putContent("repos/acme/app/_manifests/tags/latest/link", "sha256:abc");
        const info = await d.stat("repos/acme/app/_manifests/tags/latest/link");
        assert.ok(info);
        assert.equal(info.size, 10);
        // Object stores keep second precision; allow for it and for clock skew with the server.
        assert.ok(
          Math.abs(info.modified.getTime() - before) < 60_000,
          `modified ${info.modified.toISOString()}`,
        );
        assert.equal(
          (await d.getContent("repos/acme/app/_manifests/tags/latest/link"))?.toString(),
          "sha256:abc",
        );
        assert.equal(
          (await readAll(await d.read("repos/acme/app/_manifests/tags/latest/link"))).toString(),
          "sha256:abc",
        );
        await d.putContent("repos/acme/app/_manifests/tags/latest/link", Buffer.from("sha256:defg"));
        assert.equal(
          (await d.getContent("repos/acme/app/_manifests/tags/latest/link"))?.toString(),
          "sha256:defg",
        );
        assert.equal((await d.stat("repos/acme/app/_manifests/tags/latest/link"))?.size, 11);
        await d.putContent("empty", "");
        assert.equal((await d.stat("empty"))?.size, 0);
        assert.equal((await d.getContent("empty"))?.length, 0);
      }),
    );

    test(
      "directory-like paths are not files: stat and getContent null, read PATH_NOT_FOUND",
      withDriver(async (d) => {
        await d.putContent("dir/sub/file", "x");
        assert.equal(await d.stat("dir"), null);
        assert.equal(await d.stat("dir/sub"), null);
        assert.equal(await d.getContent("dir/sub"), null);
        await rejectsWithCode(d.read("dir/sub"), "PATH_NOT_FOUND");
      }),
    );

    test(
      "invalid paths are PATH_INVALID",
      withDriver(async (d) => {
        for (const bad of ["", "/abs", "a//b", "../escape", "a/../../b", "a/./b", "trailing/"]) {
          await rejectsWithCode(d.putContent(bad, "x"), "PATH_INVALID");
          await rejectsWithCode(d.stat(bad), "PATH_INVALID");
        }
        await rejectsWithCode(d.delete(""), "PATH_INVALID");
      }),
    );

    test(
      "range reads: inclusive bounds, end past the file clamped, start past the end RANGE_INVALID",
      withDriver(async (d) => {
        const content = Buffer.from("0123456789abcdefghij");
        await d.putContent("blob", content);
        const range = async (start: number, end: number) =>
          (await readAll(await d.read("blob", { start, end }))).toString();
        assert.equal(await range(0, 0), "0");
        assert.equal(await range(0, 9), "0123456789");
        assert.equal(await range(10, 19), "abcdefghij");
        assert.equal(await range(19, 19), "j");
        assert.equal(await range(15, 1000), "fghij");
        await rejectsWithCode(d.read("blob", { start: 20, end: 25 }), "RANGE_INVALID");
        await rejectsWithCode(d.read("blob", { start: 5, end: 4 }), "RANGE_INVALID");
      }),
    );

    test(
      "putContentIfAbsent: creates once, then refuses without touching the content",
      withDriver(async (d) => {
        assert.equal(await d.putContentIfAbsent("uploads/u1/startedat", "first"), true);
        assert.equal(await d.putContentIfAbsent("uploads/u1/startedat", "second"), false);
        assert.equal((await d.getContent("uploads/u1/startedat"))?.toString(), "first");
        await d.delete("uploads/u1/startedat");
        assert.equal(await d.putContentIfAbsent("uploads/u1/startedat", "third"), true);
        assert.equal((await d.getContent("uploads/u1/startedat"))?.toString(), "third");
      }),
    );

    test(
      "putContentIfAbsent: racing callers on one driver, exactly one wins and its content stays",
      withDriver(async (d) => {
        for (let round = 0; round < 10; round++) {
          const path = `race/one/${round}`;
          const contents = Array.from({ length: 6 }, (_, i) => `caller-${i}`);
          const results = await Promise.all(contents.map((c) => d.putContentIfAbsent(path, c)));
          const winners = results.flatMap((won, i) => (won ? [i] : []));
          assert.equal(winners.length, 1, `round ${round}: winners ${JSON.stringify(winners)}`);
          assert.equal((await d.getContent(path))?.toString(), contents[winners[0]!]);
        }
      }),
    );

    test(
      "putContentIfAbsent: racing callers on two driver instances (two processes)",
      withDriver(async (d, _staging, under, t) => {
        assert.ok(under.twin, `${name}: make() must provide twin() so the cross-process race is checked`);
        const other = await under.twin();
        const scope = await d.exclusiveCreateScope();
        assert.equal(await other.exclusiveCreateScope(), scope);
        let doubleWins = 0;
        let noWins = 0;
        for (let round = 0; round < 20; round++) {
          const path = `race/two/${round}`;
          const results = await Promise.all([
            d.putContentIfAbsent(path, "a"),
            other.putContentIfAbsent(path, "b"),
            d.putContentIfAbsent(path, "c"),
            other.putContentIfAbsent(path, "d"),
          ]);
          const wins = results.filter(Boolean).length;
          if (wins > 1) doubleWins++;
          if (wins === 0) noWins++;
        }
        // Never: nobody winning means a create was lost, whatever the scope.
        assert.equal(noWins, 0, "a race where no caller won");
        if (scope === "store") {
          assert.equal(
            doubleWins,
            0,
            `exclusiveCreateScope is "store" but ${doubleWins}/20 races had two winners`,
          );
        } else {
          // The driver admits creation is exclusive only within one instance; report what the
          // race showed rather than pretending the guarantee holds.
          assert.equal(scope, "instance");
          t.diagnostic(`${name}: scope "instance": ${doubleWins}/20 cross-instance races had two winners`);
        }
      }),
    );

    test(
      "ingest publishes a staged file, consumes it, and refuses a size that does not match",
      withDriver(async (d, staging) => {
        const file = join(staging, "upload-1");
        const content = randomBytes(100_000);
        await writeFile(file, content);
        await rejectsWithCode(d.ingest("blobs/sha256/aa/data", file, content.length + 1), "SIZE_MISMATCH");
        assert.equal(await d.stat("blobs/sha256/aa/data"), null, "nothing published after SIZE_MISMATCH");
        assert.ok(existsSync(file), "a refused file is left to the caller");
        await d.ingest("blobs/sha256/aa/data", file, content.length);
        assert.equal(existsSync(file), false, "the staged file is consumed");
        assert.equal((await d.stat("blobs/sha256/aa/data"))?.size, content.length);
        assert.ok((await readAll(await d.read("blobs/sha256/aa/data"))).equals(content));
        // Ingest over an existing path replaces it, as a rename would.
        const second = join(staging, "upload-2");
        await writeFile(second, "small");
        await d.ingest("blobs/sha256/aa/data", second, 5);
        assert.equal((await d.getContent("blobs/sha256/aa/data"))?.toString(), "small");
      }),
    );

    test(
      "list: sorted immediate children, files and directories alike, no prefix bleed",
      withDriver(async (d) => {
        for (const p of [
          "a/b/c",
          "a/b/d",
          "a/e",
          "a/f/g/h",
          "ab/x",
          "a-/y",
          "z",
          "a/B",
          "a/0",
          "a/_x",
          "a/e.txt",
        ]) {
          await d.putContent(p, p);
        }
        assert.deepEqual(await d.list(""), ["a", "a-", "ab", "z"]);
        assert.deepEqual(await d.list("a"), ["0", "B", "_x", "b", "e", "e.txt", "f"]);
        assert.deepEqual(await d.list("a/b"), ["c", "d"]);
        assert.deepEqual(await d.list("a/f"), ["g"]);
        assert.deepEqual(await d.list("a/f/g"), ["h"]);
        assert.deepEqual(await d.list("a/e"), [], "a file has no children");
        assert.deepEqual(await d.list("a/nope"), []);
      }),
    );

    test(
      "list pages through many children",
      withDriver(async (d) => {
        const names = Array.from({ length: 1100 }, (_, i) => `n${String(i).padStart(4, "0")}`);
        for (let i = 0; i < names.length; i += 50) {
          await Promise.all(names.slice(i, i + 50).map((n) => d.putContent(`many/${n}`, n)));
        }
        assert.deepEqual(await d.list("many"), names);
        await d.delete("many");
        assert.deepEqual(await d.list("many"), []);
        assert.deepEqual(await d.list(""), []);
      }),
    );

    test(
      "delete removes a file or a whole subtree, leaves siblings, and prunes emptied directories",
      withDriver(async (d) => {
        for (const p of ["a/b/c", "a/b/d", "a/e", "a/f/g/h", "ab/x", "a/bb"]) await d.putContent(p, p);
        await d.delete("a/b");
        assert.equal(await d.stat("a/b/c"), null);
        assert.equal(await d.stat("a/b/d"), null);
        assert.equal(
          (await d.getContent("a/bb"))?.toString(),
          "a/bb",
          "a sibling sharing the name prefix survives",
        );
        assert.deepEqual(await d.list("a"), ["bb", "e", "f"]);
        await d.delete("a/f/g/h");
        assert.deepEqual(await d.list("a"), ["bb", "e"], "emptied directories disappear");
        await d.delete("a/e");
        assert.equal(await d.stat("a/e"), null);
        await d.delete("a");
        assert.deepEqual(await d.list(""), ["ab"]);
        assert.equal((await d.getContent("ab/x"))?.toString(), "ab/x");
        await d.delete("a");
        // A path can be written again after its subtree was deleted.
        await d.putContent("a/b/c", "again");
        assert.equal((await d.getContent("a/b/c"))?.toString(), "again");
      }),
    );

    test(
      `large file (${LARGE_MIB} MiB): ingest is visible only complete, streamed read and ranges match the digest`,
      { timeout: 300_000 },
      withDriver(async (d, staging) => {
        const size = LARGE_MIB * 1024 * 1024;
        const file = join(staging, "large");
        const hash = createHash("sha256");
        const out = createWriteStream(file);
        const chunk = randomBytes(1024 * 1024);
        let tail = Buffer.alloc(0);
        for (let i = 0; i < LARGE_MIB; i++) {
          // Vary every MiB so a driver that repeats or reorders parts is caught.
          chunk.writeUInt32BE(i, 0);
          hash.update(chunk);
          if (i === LARGE_MIB - 1) tail = Buffer.from(chunk);
          if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
        }
        out.end();
        await finished(out);
        const digest = hash.digest("hex");

        // Poll while the ingest runs: every observation is "absent" or "complete".
        const seen: (number | null)[] = [];
        let done = false;
        const poll = (async () => {
          while (!done) {
            const info = await d.stat("blobs/large/data");
            seen.push(info?.size ?? null);
            await sleep(5);
          }
        })();
        try {
          await d.ingest("blobs/large/data", file, size);
        } finally {
          done = true;
          await poll;
        }
        const partial = seen.filter((s) => s !== null && s !== size);
        assert.deepEqual(partial, [], "a reader saw a partial file");

        assert.equal((await d.stat("blobs/large/data"))?.size, size);
        const readHash = createHash("sha256");
        let readBytes = 0;
        let largestChunk = 0;
        for await (const c of await d.read("blobs/large/data")) {
          const buf = c as Buffer;
          readHash.update(buf);
          readBytes += buf.length;
          largestChunk = Math.max(largestChunk, buf.length);
        }
        assert.equal(readBytes, size);
        assert.equal(readHash.digest("hex"), digest);
        assert.ok(largestChunk <= 16 * 1024 * 1024, `read buffered ${largestChunk} bytes at once`);

        const last = await readAll(
          await d.read("blobs/large/data", { start: size - tail.length, end: size - 1 }),
        );
        assert.ok(last.equals(tail), "the last MiB read by range matches");
        const straddle = await readAll(
          await d.read("blobs/large/data", { start: 1024 * 1024 - 2, end: 1024 * 1024 + 3 }),
        );
        assert.equal(straddle.length, 6);
        assert.equal(straddle.readUInt32BE(2), 1, "the range crossing a MiB boundary starts the next MiB");
      }),
    );
  });
}
