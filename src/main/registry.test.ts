import assert from "node:assert/strict";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import type { GcReport } from "../registry/gc.js";
import { formatGcReport, parseMinAge } from "./registry.js";

test("--min-age takes 90s, 30m, 1h, 7d, plain seconds and 0; anything else is USAGE", () => {
  assert.equal(parseMinAge("90s"), 90_000);
  assert.equal(parseMinAge("30m"), 1_800_000);
  assert.equal(parseMinAge("1h"), 3_600_000);
  assert.equal(parseMinAge("7d"), 604_800_000);
  assert.equal(parseMinAge("120"), 120_000);
  assert.equal(parseMinAge("0"), 0);
  for (const bad of ["", "-1h", "1.5h", "1w", "soon", "1h30m"]) {
    assert.throws(
      () => parseMinAge(bad),
      (err: unknown) => isTabbifyError(err, "USAGE") && /--min-age wants a duration/.test(err.message),
      bad,
    );
  }
});

test("the gc report prints marks, sweeps and a summary, and says so when nothing was deleted", () => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const report: GcReport = {
    dryRun: true,
    deleteUntagged: true,
    minAgeMs: 3_600_000,
    repositories: [
      { name: "acme/app", manifests: [{ digest: d("a"), reason: "tag v1" }], blobs: [d("a"), d("b")] },
    ],
    manifestsRemoved: [{ repository: "acme/app", digest: d("c") }],
    blobsFound: 5,
    blobsMarked: 2,
    blobsYoung: [{ digest: d("e"), size: 3, modified: "2030-01-01T00:00:00.000Z" }],
    blobsRemoved: [
      { digest: d("c"), size: 1000 },
      { digest: d("d"), size: 2048 },
    ],
    blobsKept: 3,
    bytesFreed: 3048,
    linksRemoved: [{ repository: "acme/app", digest: d("d"), reason: "blob removed" }],
    uploadsRemoved: 0,
    warnings: [],
  };
  const dry = formatGcReport(report, "local /data").split("\n");
  assert.equal(
    dry[0],
    "tabbify registry gc: local /data; --min-age 1h; untagged manifests removed; dry run: nothing is deleted",
  );
  assert.ok(dry.includes(`acme/app: marking manifest ${d("a")} (tag v1)`));
  assert.ok(dry.includes(`acme/app: marking blob ${d("b")}`));
  assert.ok(dry.includes(`acme/app: manifest eligible for deletion: ${d("c")}`));
  assert.ok(dry.includes(`blob eligible for deletion: ${d("d")} (2.0 KiB)`));
  assert.ok(dry.includes(`acme/app: layer link eligible for deletion: ${d("d")} (blob removed)`));
  assert.ok(
    dry.includes(`kept, younger than --min-age: blob ${d("e")} (3 B, last written 2030-01-01T00:00:00.000Z)`),
  );
  assert.equal(
    dry.at(-2),
    "summary (dry run, nothing deleted): 1 repository; 1 manifest kept, 1 would be removed; 3 blobs kept (1 younger than --min-age), 2 would be removed; 3.0 KiB would be freed (3048 bytes); 1 link would be removed; 0 stale upload sessions would be removed",
  );

  const real = formatGcReport({ ...report, dryRun: false, minAgeMs: 90_000 }, "s3 bucket b").split("\n");
  assert.equal(real[0], "tabbify registry gc: s3 bucket b; --min-age 90s; untagged manifests removed");
  assert.ok(real.includes(`deleted blob ${d("d")} (2.0 KiB)`));
  assert.ok(real.includes(`acme/app: deleted manifest ${d("c")}`));
  assert.match(real.at(-2)!, /^summary: 1 repository; .* 3\.0 KiB freed \(3048 bytes\);/);
});
