import type { ReleaseRoots } from "./release-roots.js";

/**
 * What `tabbify registry gc` (and the registry's `--gc-interval` runs) are asked to do, and the
 * report they give back: the CLI prints it (src/main/registry.ts) or writes it as JSON.
 */
export interface GcOptions {
  /** Report what would go; delete nothing. */
  dryRun?: boolean;
  /** Also remove manifests no root reaches (see gc.ts). */
  deleteUntagged?: boolean;
  /** Grace period for unreferenced blobs and untagged manifests. Default 1 h. */
  minAgeMs?: number;
  /** The time ages are measured against (ms since the epoch); default the start of the run. */
  now?: number;
  /** Storage requests in flight at once. Default 8. */
  concurrency?: number;
  /** The node's releases (release-roots.ts): which release manifests of its apps may go. */
  releases?: ReleaseRoots;
  /**
   * Stops the run between storage calls (the registry closing under a periodic run). What was
   * deleted stays deleted; every step is safe to cut short, and the next run finishes the job.
   */
  signal?: AbortSignal;
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
