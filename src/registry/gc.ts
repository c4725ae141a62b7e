import { type Digest, formatDigest, isDigest, parseDigest } from "../core/digest.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { runPool } from "../core/pool.js";
import type { StorageDriver } from "../storage/driver.js";
import { layout } from "./layout.js";
import { parseManifest } from "./manifests.js";
import type { ReleaseRoots } from "./release-roots.js";
import type { RegistryService } from "./repository.js";

/**
 * Blob garbage collection (`tabbify registry gc`): mark what the manifests of every repository
 * keep, sweep the blobs nothing keeps. The rules, and why they are safe next to a live registry,
 * are in this folder's README.md ("Garbage collection"); in short:
 *
 * - roots per repository: tagged manifests; all revisions, or with `deleteUntagged` only those
 *   written within `minAgeMs`;
 * - a kept manifest keeps, in its repository, its index children, its subject and its referrers,
 *   transitively; marked blobs are their contents, configs and layers, over all repositories;
 * - swept: revisions no root reaches (with `deleteUntagged`), then unmarked blobs whose data and
 *   links are all older than `minAgeMs`, with their links;
 * - the mark runs twice (before and after the blobs are listed and aged) and what either pass
 *   marks stays; every delete is preceded by a fresh stat of what it removes.
 */
export interface GcOptions {
  /** Report what would go; delete nothing. */
  dryRun?: boolean;
  /** Also remove manifests no root reaches (see above). */
  deleteUntagged?: boolean;
  /** Grace period for unreferenced blobs and untagged manifests. Default 1 h. */
  minAgeMs?: number;
  /** The time ages are measured against (ms since the epoch); default the start of the run. */
  now?: number;
  /** Storage requests in flight at once. Default 8. */
  concurrency?: number;
  /** The node's releases (release-roots.ts): which release manifests of its apps may go. */
  releases?: ReleaseRoots;
}

export interface GcKeptManifest {
  digest: string;
  /** Why it is kept: `tag v1`, `child of <digest>`, `referrer of <digest>`, … */
  reason: string;
}

export interface GcRepository {
  name: string;
  manifests: GcKeptManifest[];
  /** Blobs this repository's kept manifests mark (their own content included), sorted. */
  blobs: string[];
}

export interface GcBlob {
  digest: string;
  size: number;
}

export interface GcLink {
  repository: string;
  digest: string;
  /** `blob removed`: the blob is swept now; `blob missing`: its data was already gone. */
  reason: "blob removed" | "blob missing";
}

/** What a run marked and swept. With `dryRun`, the `…Removed` lists are what would go. */
export interface GcReport {
  dryRun: boolean;
  deleteUntagged: boolean;
  minAgeMs: number;
  repositories: GcRepository[];
  manifestsRemoved: { repository: string; digest: string }[];
  /** Distinct blobs found in storage before the sweep. */
  blobsFound: number;
  /** Distinct blobs the mark reached (some may have no data: then they are not found). */
  blobsMarked: number;
  /** Unreferenced, but written or linked within `minAgeMs`: kept this time. */
  blobsYoung: (GcBlob & { modified: string })[];
  blobsRemoved: GcBlob[];
  /** Found minus removed. */
  blobsKept: number;
  bytesFreed: number;
  linksRemoved: GcLink[];
  uploadsRemoved: number;
  /** Oddities that did not stop the run (a manifest without content, a tag with a bad link). */
  warnings: string[];
  /** With release roots: `repository@digest` found unreferenced this run (removed next time). */
  releaseCandidates?: string[];
  /** With release roots: tags removed with the release manifests they named. */
  tagsRemoved?: { repository: string; tag: string; digest: string }[];
}

export const defaultGcMinAgeMs = 3600 * 1000;

/** What one manifest references, read from its content once (content-addressed: never stale). */
interface Refs {
  blobs: string[];
  children: string[];
  subject?: string;
}

interface RepoMarks {
  name: string;
  /** Tags that were not roots (release rules): digest → tags, removed with the manifest. */
  prunedTags: Map<string, string[]>;
  revisions: Set<string>;
  layers: Set<string>;
  kept: Map<string, string>;
  blobs: Set<string>;
}

interface Marks {
  repos: Map<string, RepoMarks>;
  marked: Set<string>;
  /** digest → repositories holding a layer link to it. */
  linkedBy: Map<string, Set<string>>;
}

interface Candidate {
  digest: string;
  d: Digest;
  size: number;
  dataModified: number;
  /** Newest modification of the data and of every link to it. */
  newest: number;
  /** Repositories whose link to it has been stat'ed (and found). */
  links: Set<string>;
}

export async function collectGarbage(service: RegistryService, opts: GcOptions = {}): Promise<GcReport> {
  return new Collector(service, opts).run();
}

class Collector {
  private readonly driver: StorageDriver;
  private readonly dryRun: boolean;
  private readonly deleteUntagged: boolean;
  private readonly minAgeMs: number;
  private readonly now: number;
  private readonly concurrency: number;
  private readonly releases: ReleaseRoots | undefined;
  private readonly refsCache = new Map<string, Refs>();
  private readonly warnings = new Set<string>();

  constructor(
    private readonly service: RegistryService,
    opts: GcOptions,
  ) {
    this.driver = service.driver;
    this.dryRun = opts.dryRun ?? false;
    this.deleteUntagged = opts.deleteUntagged ?? false;
    this.minAgeMs = opts.minAgeMs ?? defaultGcMinAgeMs;
    if (!Number.isFinite(this.minAgeMs) || this.minAgeMs < 0) throw new Error("minAgeMs must be >= 0");
    this.now = opts.now ?? Date.now();
    this.concurrency = opts.concurrency ?? 8;
    this.releases = opts.releases;
  }

  /** Written (or linked) within the grace period, or after the run started. */
  private young(modified: number): boolean {
    return this.now - modified < this.minAgeMs;
  }

  async run(): Promise<GcReport> {
    const first = await this.markAll();
    const found = await this.listBlobs();
    const candidates = new Map<string, Candidate>();
    await runPool(
      [...found.keys()].filter((digest) => !first.marked.has(digest)),
      this.concurrency,
      async (digest) => {
        const d = found.get(digest)!;
        const info = await this.driver.stat(layout.blobData(d));
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
    await this.ageLinks(candidates, first);

    const second = await this.markAll();
    for (const digest of second.marked) candidates.delete(digest);
    await this.ageLinks(candidates, second);

    const young: Candidate[] = [];
    const eligible: Candidate[] = [];
    for (const c of [...candidates.values()].sort((a, b) => cmp(a.digest, b.digest))) {
      (this.young(c.newest) ? young : eligible).push(c);
    }
    let untagged = this.untagged(first, second);
    let firstStrike: string[] | undefined;
    let waiting: { repository: string; digest: string }[] = [];
    const releases = this.releases;
    if (releases) {
      // Two strikes: a manifest of a managed repository goes only if the last run also found it
      // unreferenced; the rest are remembered for the next run.
      const key = (m: { repository: string; digest: string }) => `${m.repository}@${m.digest}`;
      const struck = (m: { repository: string; digest: string }) =>
        !releases.repositories.has(m.repository) || releases.previous.has(key(m));
      waiting = untagged.filter((m) => !struck(m));
      firstStrike = waiting.map(key);
      untagged = untagged.filter(struck);
    }
    const dangling = await this.danglingLinks(second, found);

    const report: GcReport = {
      dryRun: this.dryRun,
      deleteUntagged: this.deleteUntagged,
      minAgeMs: this.minAgeMs,
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

    const spared = await this.sweepManifests(untagged, report, second);
    // A manifest waiting for its second strike keeps its content and blobs until then.
    for (const m of waiting) {
      spared.add(m.digest);
      for (const blob of this.refsCache.get(m.digest)?.blobs ?? []) spared.add(blob);
    }
    for (const c of eligible) {
      if (spared.has(c.digest)) continue;
      await this.sweepBlob(c, second, report);
    }
    for (const link of dangling) {
      if (this.dryRun || (await this.removeDanglingLink(link))) report.linksRemoved.push(link);
    }
    report.uploadsRemoved = await this.service.uploads.cleanupStale(this.now, { dryRun: this.dryRun });
    report.blobsKept = found.size - report.blobsRemoved.length;
    report.bytesFreed = report.blobsRemoved.reduce((n, b) => n + b.size, 0);
    report.warnings = [...this.warnings].sort();
    return report;
  }

  // ---- mark -----------------------------------------------------------------------------------

  private async markAll(): Promise<Marks> {
    const names = (await this.service.listRepositories()).items;
    const repos = new Map<string, RepoMarks>();
    await runPool(names, this.concurrency, async (name) => {
      repos.set(name, await this.markRepository(name));
    });
    const marked = new Set<string>();
    const linkedBy = new Map<string, Set<string>>();
    for (const repo of repos.values()) {
      for (const blob of repo.blobs) marked.add(blob);
      for (const digest of repo.layers) {
        const set = linkedBy.get(digest) ?? new Set<string>();
        set.add(repo.name);
        linkedBy.set(digest, set);
      }
    }
    return { repos: new Map([...repos].sort(([a], [b]) => cmp(a, b))), marked, linkedBy };
  }

  private async markRepository(name: string): Promise<RepoMarks> {
    const [revisions, layers, tags] = await Promise.all([
      this.listDigests(`${layout.manifestsRoot(name)}/revisions`),
      this.listDigests(layout.layersRoot(name)),
      this.readTags(name),
    ]);
    // Every revision is read up front: the referrers of a manifest are found from their subjects.
    const refs = new Map<string, Refs | null>();
    await runPool([...revisions], this.concurrency, async (digest) => {
      refs.set(digest, await this.refs(name, digest));
    });
    const referrers = new Map<string, string[]>();
    for (const digest of [...revisions].sort(cmp)) {
      const subject = refs.get(digest)?.subject;
      if (subject === undefined) continue;
      const list = referrers.get(subject) ?? [];
      list.push(digest);
      referrers.set(subject, list);
    }

    const kept = new Map<string, string>();
    const visit = async (roots: [string, string][]) => {
      const queue = [...roots];
      while (queue.length > 0) {
        const [digest, reason] = queue.shift()!;
        if (kept.has(digest)) continue;
        kept.set(digest, reason);
        // Tag targets and index children need not be revisions here to be read: a tag is served
        // from blob content whether or not its revision link survived.
        const r = refs.has(digest) ? refs.get(digest)! : await this.refs(name, digest);
        refs.set(digest, r);
        if (!r) continue;
        for (const child of r.children) queue.push([child, `child of ${digest}`]);
        if (r.subject !== undefined && revisions.has(r.subject))
          queue.push([r.subject, `subject of ${digest}`]);
        for (const referrer of referrers.get(digest) ?? []) queue.push([referrer, `referrer of ${digest}`]);
      }
    };
    const managed = this.releases?.repositories.get(name);
    const prunedTags = new Map<string, string[]>();
    // A release outside the keep set, or a manifest whose subject is one (its signature, its
    // release manifest): removable in a repository the node manages.
    const dropped = (digest: string): boolean => {
      if (!managed) return false;
      const outside = (d: string) => managed.releases.has(d) && !managed.keep.has(d);
      const subject = refs.get(digest)?.subject;
      return outside(digest) || (subject !== undefined && outside(subject));
    };
    const rootTags: [string, string][] = [];
    for (const [tag, digest] of tags) {
      if (!refs.has(digest)) refs.set(digest, await this.refs(name, digest));
      if (!dropped(digest)) {
        rootTags.push([tag, digest]);
        continue;
      }
      prunedTags.set(digest, [...(prunedTags.get(digest) ?? []), tag]);
    }
    await visit(rootTags.map(([tag, digest]) => [digest, `tag ${tag}`]));
    if (managed) {
      await visit(
        [...managed.keep]
          .filter(([digest]) => revisions.has(digest))
          .sort(([a], [b]) => cmp(a, b))
          .map(([digest, reason]) => [digest, `release: ${reason}`]),
      );
    }
    let rest = [...revisions].filter((d) => !kept.has(d)).sort(cmp);
    if (managed && !this.deleteUntagged) {
      // Only release manifests (and what hangs off them) are removable here without the flag.
      await visit(
        rest.filter((d) => !dropped(d)).map((d) => [d, "untagged, kept without --delete-untagged"]),
      );
      rest = rest.filter((d) => !kept.has(d));
    }
    if (!this.deleteUntagged && !managed) {
      await visit(rest.map((d) => [d, "untagged, kept without --delete-untagged"]));
    } else {
      const recent: [string, string][] = [];
      await runPool(rest, this.concurrency, async (digest) => {
        const info = await this.driver.stat(layout.revisionLink(name, parseDigest(digest)));
        if (info && this.young(info.modified.getTime())) recent.push([digest, "pushed within --min-age"]);
      });
      await visit(recent.sort(([a], [b]) => cmp(a, b)));
    }

    const blobs = new Set<string>();
    for (const digest of kept.keys()) {
      const r = refs.get(digest);
      if (!r) continue;
      blobs.add(digest);
      for (const blob of r.blobs) blobs.add(blob);
    }
    return { name, prunedTags, revisions, layers, kept, blobs };
  }

  /** What a manifest references; null (and a warning) when its content is gone. */
  private async refs(repository: string, digest: string): Promise<Refs | null> {
    const cached = this.refsCache.get(digest);
    if (cached) return cached;
    const content = await this.driver.getContent(layout.blobData(parseDigest(digest)));
    if (!content) {
      this.warnings.add(
        `${repository}: manifest ${digest} has no content, so what it referenced is not known and not kept by it`,
      );
      return null;
    }
    const refs = manifestRefs(digest, content);
    this.refsCache.set(digest, refs);
    return refs;
  }

  private async readTags(name: string): Promise<[string, string][]> {
    const out: [string, string][] = [];
    for (const tag of await this.driver.list(layout.tagsRoot(name))) {
      const raw = await this.driver.getContent(layout.tagLink(name, tag));
      if (!raw) continue;
      const digest = raw.toString("utf8").trim();
      if (isDigest(digest)) out.push([tag, formatDigest(parseDigest(digest))]);
      else this.warnings.add(`${name}: tag ${tag} holds no valid digest; it keeps nothing`);
    }
    return out;
  }

  /** Digests under `<root>/<alg>/<hex>/…`; names that are not digests are left alone. */
  private async listDigests(root: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg}`)) {
        const digest = `${alg}:${hex}`;
        if (isDigest(digest)) out.add(digest);
      }
    }
    return out;
  }

  private async listBlobs(): Promise<Map<string, Digest>> {
    const prefixes: string[] = [];
    for (const alg of await this.driver.list("blobs")) {
      for (const two of await this.driver.list(`blobs/${alg}`)) prefixes.push(`${alg}/${two}`);
    }
    const found = new Map<string, Digest>();
    await runPool(prefixes, this.concurrency, async (prefix) => {
      const [alg, two] = prefix.split("/") as [string, string];
      for (const hex of await this.driver.list(`blobs/${prefix}`)) {
        const digest = `${alg}:${hex}`;
        if (hex.startsWith(two) && isDigest(digest)) found.set(digest, parseDigest(digest));
      }
    });
    return new Map([...found].sort(([a], [b]) => cmp(a, b)));
  }

  /** Folds the age of every not yet stat'ed link to a candidate into its `newest`. */
  private async ageLinks(candidates: Map<string, Candidate>, marks: Marks): Promise<void> {
    const work: [Candidate, string][] = [];
    for (const c of candidates.values()) {
      for (const repo of marks.linkedBy.get(c.digest) ?? []) if (!c.links.has(repo)) work.push([c, repo]);
    }
    await runPool(work, this.concurrency, async ([c, repo]) => {
      const info = await this.driver.stat(layout.layerLink(repo, c.d));
      if (!info) return;
      c.links.add(repo);
      c.newest = Math.max(c.newest, info.modified.getTime());
    });
  }

  /** Revisions neither pass kept (only with --delete-untagged: otherwise every revision is kept). */
  private untagged(first: Marks, second: Marks): { repository: string; digest: string }[] {
    if (!this.deleteUntagged && !this.releases) return [];
    const out: { repository: string; digest: string }[] = [];
    for (const repo of second.repos.values()) {
      if (!this.deleteUntagged && !this.releases?.repositories.has(repo.name)) continue;
      const before = first.repos.get(repo.name);
      for (const digest of [...repo.revisions].sort(cmp)) {
        if (!repo.kept.has(digest) && !before?.kept.has(digest)) out.push({ repository: repo.name, digest });
      }
    }
    return out;
  }

  /** Old links to blobs whose data is gone (a sweep cut short between data and links). */
  private async danglingLinks(marks: Marks, found: Map<string, Digest>): Promise<GcLink[]> {
    const work: { repository: string; digest: string }[] = [];
    for (const [digest, repos] of marks.linkedBy) {
      if (found.has(digest)) continue;
      for (const repository of repos) work.push({ repository, digest });
    }
    const out: GcLink[] = [];
    await runPool(work, this.concurrency, async ({ repository, digest }) => {
      const d = parseDigest(digest);
      const link = await this.driver.stat(layout.layerLink(repository, d));
      if (!link || this.young(link.modified.getTime())) return;
      if (await this.driver.stat(layout.blobData(d))) return;
      out.push({ repository, digest, reason: "blob missing" });
    });
    return out.sort((a, b) => cmp(a.repository, b.repository) || cmp(a.digest, b.digest));
  }

  // ---- sweep ----------------------------------------------------------------------------------

  /**
   * Removes untagged manifests. One re-pushed since it was judged (its revision link is fresh
   * again) stays, and so do the blobs it marks: they are returned so the blob sweep skips them.
   */
  private async sweepManifests(
    untagged: { repository: string; digest: string }[],
    report: GcReport,
    marks: Marks,
  ): Promise<Set<string>> {
    const spared = new Set<string>();
    for (const m of untagged) {
      const d = parseDigest(m.digest);
      const refs = this.refsCache.get(m.digest);
      if (!this.dryRun) {
        const link = await this.driver.stat(layout.revisionLink(m.repository, d));
        if (!link) continue;
        if (this.young(link.modified.getTime())) {
          spared.add(m.digest);
          for (const blob of refs?.blobs ?? []) spared.add(blob);
          continue;
        }
        await this.removeTagsOf(m, marks, report);
        if (refs?.subject !== undefined) {
          const subject = parseDigest(refs.subject);
          await this.driver.delete(dirOf(layout.referrerLink(m.repository, subject, d)));
        }
        await this.driver.delete(dirOf(layout.revisionLink(m.repository, d)));
      } else {
        for (const tag of marks.repos.get(m.repository)?.prunedTags.get(m.digest) ?? [])
          report.tagsRemoved?.push({ repository: m.repository, tag, digest: m.digest });
      }
      report.manifestsRemoved.push(m);
    }
    return spared;
  }

  /** Tags the release rules did not count as roots, if they still name the manifest going now. */
  private async removeTagsOf(
    m: { repository: string; digest: string },
    marks: Marks,
    report: GcReport,
  ): Promise<void> {
    for (const tag of marks.repos.get(m.repository)?.prunedTags.get(m.digest) ?? []) {
      const link = await this.driver.getContent(layout.tagLink(m.repository, tag));
      if (link?.toString("utf8").trim() !== m.digest) continue;
      await this.driver.delete(layout.tag(m.repository, tag));
      report.tagsRemoved?.push({ repository: m.repository, tag, digest: m.digest });
    }
  }

  private async sweepBlob(c: Candidate, marks: Marks, report: GcReport): Promise<void> {
    const repos = [...c.links].sort(cmp);
    if (!this.dryRun) {
      const info = await this.driver.stat(layout.blobData(c.d));
      if (!info) return;
      // Re-written since it was aged (an upload of the same bytes): no longer ours to take.
      if (info.modified.getTime() !== c.dataModified || this.young(info.modified.getTime())) return;
      await this.driver.delete(dirOf(layout.blobData(c.d)));
    }
    report.blobsRemoved.push({ digest: c.digest, size: c.size });
    for (const repo of new Set([...repos, ...(marks.linkedBy.get(c.digest) ?? [])])) {
      if (!this.dryRun) {
        const link = await this.driver.stat(layout.layerLink(repo, c.d));
        if (!link) continue;
        // Linked again after the data went (a re-upload racing the sweep): the link is theirs.
        if (this.young(link.modified.getTime())) continue;
        await this.driver.delete(dirOf(layout.layerLink(repo, c.d)));
      }
      report.linksRemoved.push({ repository: repo, digest: c.digest, reason: "blob removed" });
    }
  }

  private async removeDanglingLink(link: GcLink): Promise<boolean> {
    const d = parseDigest(link.digest);
    const info = await this.driver.stat(layout.layerLink(link.repository, d));
    if (!info || this.young(info.modified.getTime())) return false;
    if (await this.driver.stat(layout.blobData(d))) return false;
    await this.driver.delete(dirOf(layout.layerLink(link.repository, d)));
    return true;
  }
}

/**
 * The blobs, children and subject a stored manifest references. Content that does not parse was
 * not written by this registry (every manifest is validated on push): the run stops before
 * anything is deleted rather than guess what the manifest kept.
 */
function manifestRefs(digest: string, content: Buffer): Refs {
  let parsed: ReturnType<typeof parseManifest>;
  try {
    parsed = parseManifest(content, undefined);
  } catch (err) {
    if (!isTabbifyError(err)) throw err;
    throw new TabbifyError(
      "GC_MANIFEST_UNREADABLE",
      `manifest ${digest} in storage does not parse (${err.message}); nothing was deleted`,
      { digest },
    );
  }
  const blobs = new Set(parsed.blobs.map((b) => formatDigest(b.digest)));
  // Foreign layers need not be in the registry, but one that was pushed anyway is kept too.
  const layers = (JSON.parse(content.toString("utf8")) as { layers?: unknown }).layers;
  if (Array.isArray(layers)) {
    for (const layer of layers) {
      const ref = (layer as { digest?: unknown }).digest;
      if (typeof ref === "string" && isDigest(ref)) blobs.add(ref);
    }
  }
  const refs: Refs = { blobs: [...blobs].sort(cmp), children: parsed.manifests.map((m) => m.digest) };
  if (parsed.subject) refs.subject = parsed.subject.digest;
  return refs;
}

function mergeRepositories(first: Marks, second: Marks): GcRepository[] {
  const names = [...new Set([...first.repos.keys(), ...second.repos.keys()])].sort(cmp);
  return names.map((name) => {
    const a = first.repos.get(name);
    const b = second.repos.get(name);
    const manifests = new Map<string, string>(a?.kept);
    for (const [digest, reason] of b?.kept ?? []) if (!manifests.has(digest)) manifests.set(digest, reason);
    const blobs = new Set([...(a?.blobs ?? []), ...(b?.blobs ?? [])]);
    return {
      name,
      manifests: [...manifests].map(([digest, reason]) => ({ digest, reason })),
      blobs: [...blobs].sort(cmp),
    };
  });
}

/** The directory a link or data file sits in: deleting it leaves no empty parent behind. */
function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
