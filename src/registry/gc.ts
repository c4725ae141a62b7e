import type { Digest } from "../core/digest.js";
import { isDigest, parseDigest } from "../core/digest.js";
import { cmp, eachLimit, type GcRun, isYoung, type Marks } from "./gc-common.js";
import { markAll, mergeRepositories } from "./gc-mark.js";
import { type ManifestRef, secondStrikes } from "./gc-releases.js";
import { defaultGcMinAgeMs, type GcOptions, type GcReport } from "./gc-report.js";
import { type Candidate, danglingLinks, removeDanglingLink, sweepBlob, sweepManifests } from "./gc-sweep.js";
import { layout } from "./layout.js";
import type { RegistryService } from "./repository.js";

export type { GcBlob, GcKeptManifest, GcLink, GcOptions, GcReport, GcRepository } from "./gc-report.js";
export { defaultGcMinAgeMs } from "./gc-report.js";

/**
 * Blob garbage collection (`tabbify registry gc`, or `--gc-interval` in the registry): mark what
 * the manifests of every repository keep, sweep the blobs nothing keeps. The rules, and why they
 * are safe next to a live registry, are in this folder's README.md ("Garbage collection"); in
 * short:
 *
 * - roots per repository: tagged manifests; all revisions, or with `deleteUntagged` only those
 *   written within `minAgeMs` (gc-mark.ts);
 * - a kept manifest keeps, in its repository, its index children, its subject and its referrers,
 *   transitively; marked blobs are their contents, configs and layers, over all repositories;
 * - with the node's releases, the release rules of gc-releases.ts;
 * - swept: revisions no root reaches (with `deleteUntagged`), then unmarked blobs whose data and
 *   links are all older than `minAgeMs`, with their links (gc-sweep.ts);
 * - the mark runs twice (before and after the blobs are listed and aged) and what either pass
 *   marks stays; every delete is preceded by a fresh stat of what it removes.
 */
export async function collectGarbage(service: RegistryService, opts: GcOptions = {}): Promise<GcReport> {
  const minAgeMs = opts.minAgeMs ?? defaultGcMinAgeMs;
  if (!Number.isFinite(minAgeMs) || minAgeMs < 0) throw new Error("minAgeMs must be >= 0");
  const run: GcRun = {
    service,
    driver: service.driver,
    dryRun: opts.dryRun ?? false,
    deleteUntagged: opts.deleteUntagged ?? false,
    minAgeMs,
    now: opts.now ?? Date.now(),
    concurrency: opts.concurrency ?? 8,
    releases: opts.releases,
    signal: opts.signal,
    refsCache: new Map(),
    warnings: new Set(),
  };
  const first = await markAll(run);
  const found = await listBlobs(run);
  const candidates = new Map<string, Candidate>();
  await eachLimit(
    run,
    [...found.keys()].filter((digest) => !first.marked.has(digest)),
    async (digest) => {
      const d = found.get(digest)!;
      const info = await run.driver.stat(layout.blobData(d));
      if (!info) return;
      const modified = info.modified.getTime();
      candidates.set(digest, {
        digest,
        d,
        size: info.size,
        dataModified: modified,
        newest: modified,
        links: new Set(),
      });
    },
  );
  await ageLinks(run, candidates, first);

  const second = await markAll(run);
  for (const digest of second.marked) candidates.delete(digest);
  await ageLinks(run, candidates, second);

  const young: Candidate[] = [];
  const eligible: Candidate[] = [];
  for (const c of [...candidates.values()].sort((a, b) => cmp(a.digest, b.digest))) {
    (isYoung(run, c.newest) ? young : eligible).push(c);
  }
  let untagged = untaggedRevisions(run, first, second);
  let firstStrike: string[] | undefined;
  let waiting: ManifestRef[] = [];
  if (run.releases) {
    const strikes = secondStrikes(untagged, run.releases);
    untagged = strikes.removable;
    waiting = strikes.waiting;
    firstStrike = strikes.firstStrike;
  }
  const dangling = await danglingLinks(run, second, found);

  const report: GcReport = {
    dryRun: run.dryRun,
    deleteUntagged: run.deleteUntagged,
    minAgeMs: run.minAgeMs,
    repositories: mergeRepositories(first, second),
    manifestsRemoved: [],
    blobsFound: found.size,
    blobsMarked: new Set([...first.marked, ...second.marked]).size,
    blobsYoung: young.map((c) => ({
      digest: c.digest,
      size: c.size,
      modified: new Date(c.newest).toISOString(),
    })),
    blobsRemoved: [],
    blobsKept: 0,
    bytesFreed: 0,
    linksRemoved: [],
    uploadsRemoved: 0,
    warnings: [],
    ...(firstStrike ? { releaseCandidates: firstStrike, tagsRemoved: [] } : {}),
  };

  const spared = await sweepManifests(run, untagged, report, second);
  // A manifest waiting for its second strike keeps its content and blobs until then.
  for (const m of waiting) {
    spared.add(m.digest);
    for (const blob of run.refsCache.get(m.digest)?.blobs ?? []) spared.add(blob);
  }
  for (const c of eligible) {
    if (spared.has(c.digest)) continue;
    await sweepBlob(run, c, second, report);
  }
  for (const link of dangling) {
    if (run.dryRun || (await removeDanglingLink(run, link))) report.linksRemoved.push(link);
  }
  report.uploadsRemoved = await service.uploads.cleanupStale(run.now, { dryRun: run.dryRun });
  report.blobsKept = found.size - report.blobsRemoved.length;
  report.bytesFreed = report.blobsRemoved.reduce((n, b) => n + b.size, 0);
  report.warnings = [...run.warnings].sort();
  return report;
}

async function listBlobs(run: GcRun): Promise<Map<string, Digest>> {
  const prefixes: string[] = [];
  for (const alg of await run.driver.list("blobs")) {
    for (const two of await run.driver.list(`blobs/${alg}`)) prefixes.push(`${alg}/${two}`);
  }
  const found = new Map<string, Digest>();
  await eachLimit(run, prefixes, async (prefix) => {
    const [alg, two] = prefix.split("/") as [string, string];
    for (const hex of await run.driver.list(`blobs/${prefix}`)) {
      const digest = `${alg}:${hex}`;
      if (hex.startsWith(two) && isDigest(digest)) found.set(digest, parseDigest(digest));
    }
  });
  return new Map([...found].sort(([a], [b]) => cmp(a, b)));
}

/** Folds the age of every not yet stat'ed link to a candidate into its `newest`. */
async function ageLinks(run: GcRun, candidates: Map<string, Candidate>, marks: Marks): Promise<void> {
  const work: [Candidate, string][] = [];
  for (const c of candidates.values()) {
    for (const repo of marks.linkedBy.get(c.digest) ?? []) if (!c.links.has(repo)) work.push([c, repo]);
  }
  await eachLimit(run, work, async ([c, repo]) => {
    const info = await run.driver.stat(layout.layerLink(repo, c.d));
    if (!info) return;
    c.links.add(repo);
    c.newest = Math.max(c.newest, info.modified.getTime());
  });
}

/** Revisions neither pass kept (only with --delete-untagged: otherwise every revision is kept). */
function untaggedRevisions(run: GcRun, first: Marks, second: Marks): ManifestRef[] {
  if (!run.deleteUntagged && !run.releases) return [];
  const out: ManifestRef[] = [];
  for (const repo of second.repos.values()) {
    if (!run.deleteUntagged && !run.releases?.repositories.has(repo.name)) continue;
    const before = first.repos.get(repo.name);
    for (const digest of [...repo.revisions].sort(cmp)) {
      if (!repo.kept.has(digest) && !before?.kept.has(digest)) out.push({ repository: repo.name, digest });
    }
  }
  return out;
}
