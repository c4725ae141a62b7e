import { cmp, type Refs } from "./gc-common.js";
import type { ReleaseRepository, ReleaseRoots } from "./release-roots.js";

/**
 * The release rules of a GC run (`--keep-releases-from`, see release-roots.ts): in a repository
 * the node manages, a release outside its keep set is no root, nor is what hangs off it; the keep
 * set is; and a release manifest goes only on its second strike.
 */

/** Subjects followed up from a manifest: release → its release manifest → that one's signature. */
const maxSubjectHops = 4;

/**
 * Whether a manifest is removable by the release rules: a release outside the keep set, or a
 * manifest whose subject is one, directly or through subjects (its signature, its release
 * manifest, the release manifest's signature). Never in a repository the node does not manage.
 */
export function releaseDropped(
  managed: ReleaseRepository | undefined,
  refs: ReadonlyMap<string, Refs | null>,
): (digest: string) => boolean {
  return (digest) => {
    if (!managed) return false;
    let current: string | undefined = digest;
    for (let hop = 0; current !== undefined && hop <= maxSubjectHops; hop++) {
      if (managed.releases.has(current)) return !managed.keep.has(current);
      current = refs.get(current)?.subject;
    }
    return false;
  };
}

/** The keep set as mark roots, with the node's reason; only digests the repository holds. */
export function keptReleaseRoots(
  managed: ReleaseRepository,
  revisions: ReadonlySet<string>,
): [string, string][] {
  return [...managed.keep]
    .filter(([digest]) => revisions.has(digest))
    .sort(([a], [b]) => cmp(a, b))
    .map(([digest, reason]) => [digest, `release: ${reason}`]);
}

export interface ManifestRef {
  repository: string;
  digest: string;
}

/**
 * Two strikes: a manifest of a managed repository goes only if the last run also found it
 * unreferenced; the rest wait, and are remembered (`firstStrike`) for the next run.
 */
export function secondStrikes(
  untagged: ManifestRef[],
  releases: ReleaseRoots,
): { removable: ManifestRef[]; waiting: ManifestRef[]; firstStrike: string[] } {
  const key = (m: ManifestRef) => `${m.repository}@${m.digest}`;
  const struck = (m: ManifestRef) =>
    !releases.repositories.has(m.repository) || releases.previous.has(key(m));
  const waiting = untagged.filter((m) => !struck(m));
  return { removable: untagged.filter(struck), waiting, firstStrike: waiting.map(key) };
}
