// The scheduler of `--gc-interval`: runs never overlap, the next is timed from the end of the
// last, a failed run does not stop the next, and close() aborts the run in progress and waits
// for it (no run outlives close, none starts after it).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { silentLogger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { LocalDriver } from "../storage/local.js";
import { collectGarbage } from "./gc.js";
import type { GcReport } from "./gc-report.js";
import { GcSchedule } from "./gc-schedule.js";
import { RegistryService } from "./repository.js";

const emptyReport = (): GcReport => ({
  dryRun: false,
  deleteUntagged: false,
  minAgeMs: 1000,
  repositories: [],
  manifestsRemoved: [],
  blobsFound: 0,
  blobsMarked: 0,
  blobsYoung: [],
  blobsRemoved: [],
  blobsKept: 0,
  bytesFreed: 0,
  linksRemoved: [],
  uploadsRemoved: 0,
  warnings: [],
});

async function until(what: string, ok: () => boolean, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test("runs longer than the interval never overlap, and a failed run does not stop the next", async () => {
  let inFlight = 0;
  let most = 0;
  let calls = 0;
  const schedule = new GcSchedule({
    intervalMs: 5,
    log: silentLogger,
    run: async () => {
      calls++;
      inFlight++;
      most = Math.max(most, inFlight);
      await sleep(40);
      inFlight--;
      if (calls === 2) throw new Error("storage hiccup");
      return emptyReport();
    },
  });
  schedule.start();
  schedule.start(); // a second start is a no-op, not a second timer
  await until("four runs", () => schedule.status.runs >= 4);
  await schedule.close();
  assert.equal(most, 1, "two runs overlapped");
  assert.ok(schedule.status.last, "a report was kept");
  const after = calls;
  await sleep(100);
  assert.equal(calls, after, "a run started after close");
});

test("close aborts the run in progress and waits for it to end", async () => {
  let started = false;
  let ended = false;
  let sawAbort = false;
  const schedule = new GcSchedule({
    intervalMs: 5,
    log: silentLogger,
    run: async (signal) => {
      started = true;
      // A run that only ends when told to: the collector checks its signal between storage calls.
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
      sawAbort = signal.aborted;
      await sleep(50);
      ended = true;
      throw new Error("aborted");
    },
  });
  schedule.start();
  await until("the run to start", () => started);
  await schedule.close();
  assert.ok(sawAbort, "the run was not told to stop");
  assert.ok(ended, "close returned before the run ended");
});

test("close before the first run: nothing ever runs", async () => {
  let calls = 0;
  const schedule = new GcSchedule({
    intervalMs: 50,
    log: silentLogger,
    run: async () => {
      calls++;
      return emptyReport();
    },
  });
  schedule.start();
  await schedule.close();
  await sleep(150);
  assert.equal(calls, 0);
  assert.throws(() => new GcSchedule({ intervalMs: 0, log: silentLogger, run: async () => emptyReport() }));
});

test("a real collection stops at its first storage call once its signal fired, deleting nothing", async () => {
  const dir = await mkdtemp(join(tmpdir(), "gc-abort-"));
  try {
    const driver = new LocalDriver(dir);
    const service = new RegistryService({ driver, stagingDir: join(dir, "staging") });
    const orphan = Buffer.from("nobody references this blob");
    const digest = `sha256:${createHash("sha256").update(orphan).digest("hex")}`;
    await service.pushBlob("acme/web", digest, Readable.from([orphan]), orphan.length);
    const stop = new AbortController();
    stop.abort();
    await assert.rejects(
      collectGarbage(service, { minAgeMs: 0, signal: stop.signal }),
      (err: unknown) => (err as { code?: string }).code === "GC_ABORTED",
    );
    const collected = await collectGarbage(service, { minAgeMs: 0, dryRun: true });
    assert.deepEqual(
      collected.blobsRemoved.map((b) => b.digest),
      [digest],
      "the aborted run deleted the blob it should have left for the next",
    );
    assert.ok((await readdir(dir)).length > 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
