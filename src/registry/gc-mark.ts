import { formatDigest, isDigest, parseDigest } from "../core/digest.js";
import { isTabbifyError, TabbifyError } from "../core/errors.js";
import { cmp, eachLimit, type GcRun, isYoung, type Marks, type Refs, type RepoMarks } from "./gc-common.js";
import { keptReleaseRoots, releaseDropped } from "./gc-releases.js";
import type { GcRepository } from "./gc-report.js";
import { layout } from "./layout.js";
import { parseManifest } from "./manifests.js";

/**
 * The mark of a GC run: per repository, the roots (tags, and with release rules the releases to
 * keep; without --delete-untagged every revision) and what they reach in that repository: index
 * children, subjects and referrers, transitively. Marked blobs are their contents, configs and
 * layers, over all repositories.
 */
export async function markAll(run: GcRun): Promise<Marks> {
  const names = (await run.service.listRepositories()).items;
  const repos = new Map<string, RepoMarks>();
  await eachLimit(run, names, async (name) => {
    repos.set(name, await markRepository(run, name));
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

async function markRepository(run: GcRun, name: string): Promise<RepoMarks> {
  const [revisions, layers, tags] = await Promise.all([
    listDigests(run, `${layout.manifestsRoot(name)}/revisions`),
    listDigests(run, layout.layersRoot(name)),
    readTags(run, name),
  ]);
  // Every revision is read up front: the referrers of a manifest are found from their subjects.
  const refs = new Map<string, Refs | null>();
  await eachLimit(run, [...revisions], async (digest) => {
    refs.set(digest, await refsOf(run, name, digest));
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
      const r = refs.has(digest) ? refs.get(digest)! : await refsOf(run, name, digest);
      refs.set(digest, r);
      if (!r) continue;
      for (const child of r.children) queue.push([child, `child of ${digest}`]);
      if (r.subject !== undefined && revisions.has(r.subject))
        queue.push([r.subject, `subject of ${digest}`]);
      for (const referrer of referrers.get(digest) ?? []) queue.push([referrer, `referrer of ${digest}`]);
    }
  };
  const managed = run.releases?.repositories.get(name);
  const prunedTags = new Map<string, string[]>();
  const dropped = releaseDropped(managed, refs);
  const rootTags: [string, string][] = [];
  for (const [tag, digest] of tags) {
    if (!refs.has(digest)) refs.set(digest, await refsOf(run, name, digest));
    if (!dropped(digest)) {
      rootTags.push([tag, digest]);
      continue;
    }
    prunedTags.set(digest, [...(prunedTags.get(digest) ?? []), tag]);
  }
  await visit(rootTags.map(([tag, digest]) => [digest, `tag ${tag}`]));
  if (managed) await visit(keptReleaseRoots(managed, revisions));
  let rest = [...revisions].filter((d) => !kept.has(d)).sort(cmp);
  if (managed && !run.deleteUntagged) {
    // Only release manifests (and what hangs off them) are removable here without the flag.
    await visit(rest.filter((d) => !dropped(d)).map((d) => [d, "untagged, kept without --delete-untagged"]));
    rest = rest.filter((d) => !kept.has(d));
  }
  if (!run.deleteUntagged && !managed) {
    await visit(rest.map((d) => [d, "untagged, kept without --delete-untagged"]));
  } else {
    const recent: [string, string][] = [];
    await eachLimit(run, rest, async (digest) => {
      const info = await run.driver.stat(layout.revisionLink(name, parseDigest(digest)));
      if (info && isYoung(run, info.modified.getTime())) recent.push([digest, "pushed within --min-age"]);
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
async function refsOf(run: GcRun, repository: string, digest: string): Promise<Refs | null> {
  const cached = run.refsCache.get(digest);
  if (cached) return cached;
  const content = await run.driver.getContent(layout.blobData(parseDigest(digest)));
  if (!content) {
    run.warnings.add(
      `${repository}: manifest ${digest} has no content, so what it referenced is not known and not kept by it`,
    );
    return null;
  }
  const refs = manifestRefs(digest, content);
  run.refsCache.set(digest, refs);
  return refs;
}

async function readTags(run: GcRun, name: string): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const tag of await run.driver.list(layout.tagsRoot(name))) {
    const raw = await run.driver.getContent(layout.tagLink(name, tag));
    if (!raw) continue;
    const digest = raw.toString("utf8").trim();
    if (isDigest(digest)) out.push([tag, formatDigest(parseDigest(digest))]);
    else run.warnings.add(`${name}: tag ${tag} holds no valid digest; it keeps nothing`);
  }
  return out;
}

/** Digests under `<root>/<alg>/<hex>/…`; names that are not digests are left alone. */
async function listDigests(run: GcRun, root: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const alg of await run.driver.list(root)) {
    for (const hex of await run.driver.list(`${root}/${alg}`)) {
      const digest = `${alg}:${hex}`;
      if (isDigest(digest)) out.add(digest);
    }
  }
  return out;
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

/** The repositories as either mark pass saw them (what either kept stays). */
export function mergeRepositories(first: Marks, second: Marks): GcRepository[] {
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
