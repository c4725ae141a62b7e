import { type Digest, parseDigest } from "../core/digest.js";
import { checkpoint, cmp, dirOf, eachLimit, type GcRun, isYoung, type Marks } from "./gc-common.js";
import type { ManifestRef } from "./gc-releases.js";
import type { GcLink, GcReport } from "./gc-report.js";
import { layout } from "./layout.js";

/**
 * The sweep of a GC run. Every delete is preceded by a fresh stat of what it removes: anything
 * written or linked again since the mark judged it (a re-push racing the run) is left alone.
 */

/** An unmarked blob, with the ages of its data and of its links. */
export interface Candidate {
  digest: string;
  d: Digest;
  size: number;
  dataModified: number;
  /** Newest modification of the data and of every link to it. */
  newest: number;
  /** Repositories whose link to it has been stat'ed (and found). */
  links: Set<string>;
}

/**
 * Removes untagged manifests. One re-pushed since it was judged (its revision link is fresh
 * again) stays, and so do the blobs it marks: they are returned so the blob sweep skips them.
 */
export async function sweepManifests(
  run: GcRun,
  untagged: ManifestRef[],
  report: GcReport,
  marks: Marks,
): Promise<Set<string>> {
  const spared = new Set<string>();
  for (const m of untagged) {
    checkpoint(run);
    const d = parseDigest(m.digest);
    const refs = run.refsCache.get(m.digest);
    if (!run.dryRun) {
      const link = await run.driver.stat(layout.revisionLink(m.repository, d));
      if (!link) continue;
      if (isYoung(run, link.modified.getTime())) {
        spared.add(m.digest);
        for (const blob of refs?.blobs ?? []) spared.add(blob);
        continue;
      }
      await removeTagsOf(run, m, marks, report);
      if (refs?.subject !== undefined) {
        const subject = parseDigest(refs.subject);
        await run.driver.delete(dirOf(layout.referrerLink(m.repository, subject, d)));
      }
      await run.driver.delete(dirOf(layout.revisionLink(m.repository, d)));
    } else {
      for (const tag of marks.repos.get(m.repository)?.prunedTags.get(m.digest) ?? [])
        report.tagsRemoved?.push({ repository: m.repository, tag, digest: m.digest });
    }
    report.manifestsRemoved.push(m);
  }
  return spared;
}

/** Tags the release rules did not count as roots, if they still name the manifest going now. */
async function removeTagsOf(run: GcRun, m: ManifestRef, marks: Marks, report: GcReport): Promise<void> {
  for (const tag of marks.repos.get(m.repository)?.prunedTags.get(m.digest) ?? []) {
    const link = await run.driver.getContent(layout.tagLink(m.repository, tag));
    if (link?.toString("utf8").trim() !== m.digest) continue;
    await run.driver.delete(layout.tag(m.repository, tag));
    report.tagsRemoved?.push({ repository: m.repository, tag, digest: m.digest });
  }
}

export async function sweepBlob(run: GcRun, c: Candidate, marks: Marks, report: GcReport): Promise<void> {
  checkpoint(run);
  const repos = [...c.links].sort(cmp);
  if (!run.dryRun) {
    const info = await run.driver.stat(layout.blobData(c.d));
    if (!info) return;
    // Re-written since it was aged (an upload of the same bytes): no longer ours to take.
    if (info.modified.getTime() !== c.dataModified || isYoung(run, info.modified.getTime())) return;
    await run.driver.delete(dirOf(layout.blobData(c.d)));
  }
  report.blobsRemoved.push({ digest: c.digest, size: c.size });
  for (const repo of new Set([...repos, ...(marks.linkedBy.get(c.digest) ?? [])])) {
    if (!run.dryRun) {
      const link = await run.driver.stat(layout.layerLink(repo, c.d));
      if (!link) continue;
      // Linked again after the data went (a re-upload racing the sweep): the link is theirs.
      if (isYoung(run, link.modified.getTime())) continue;
      await run.driver.delete(dirOf(layout.layerLink(repo, c.d)));
    }
    report.linksRemoved.push({ repository: repo, digest: c.digest, reason: "blob removed" });
  }
}

/** Old links to blobs whose data is gone (a sweep cut short between data and links). */
export async function danglingLinks(run: GcRun, marks: Marks, found: Map<string, Digest>): Promise<GcLink[]> {
  const work: ManifestRef[] = [];
  for (const [digest, repos] of marks.linkedBy) {
    if (found.has(digest)) continue;
    for (const repository of repos) work.push({ repository, digest });
  }
  const out: GcLink[] = [];
  await eachLimit(run, work, async ({ repository, digest }) => {
    const d = parseDigest(digest);
    const link = await run.driver.stat(layout.layerLink(repository, d));
    if (!link || isYoung(run, link.modified.getTime())) return;
    if (await run.driver.stat(layout.blobData(d))) return;
    out.push({ repository, digest, reason: "blob missing" });
  });
  return out.sort((a, b) => cmp(a.repository, b.repository) || cmp(a.digest, b.digest));
}

export async function removeDanglingLink(run: GcRun, link: GcLink): Promise<boolean> {
  checkpoint(run);
  const d = parseDigest(link.digest);
  const info = await run.driver.stat(layout.layerLink(link.repository, d));
  if (!info || isYoung(run, info.modified.getTime())) return false;
  if (await run.driver.stat(layout.blobData(d))) return false;
  await run.driver.delete(dirOf(layout.layerLink(link.repository, d)));
  return true;
}
