import { TabbifyError } from "../core/errors.js";
import { runPool } from "../core/pool.js";
import type { StorageDriver } from "../storage/driver.js";
import type { ReleaseRoots } from "./release-roots.js";
import type { RegistryService } from "./repository.js";

/** What the mark, the release rules and the sweep of one GC run share. */

/** What one manifest references, read from its content once (content-addressed: never stale). */
export interface Refs {
  blobs: string[];
  children: string[];
  subject?: string;
}

export interface RepoMarks {
  name: string;
  /** Tags that were not roots (release rules): digest → tags, removed with the manifest. */
  prunedTags: Map<string, string[]>;
  revisions: Set<string>;
  layers: Set<string>;
  kept: Map<string, string>;
  blobs: Set<string>;
}

export interface Marks {
  repos: Map<string, RepoMarks>;
  marked: Set<string>;
  /** digest → repositories holding a layer link to it. */
  linkedBy: Map<string, Set<string>>;
}

/** One run's settings and memory: its clock, its manifest cache, its warnings. */
export interface GcRun {
  readonly service: RegistryService;
  readonly driver: StorageDriver;
  readonly dryRun: boolean;
  readonly deleteUntagged: boolean;
  readonly minAgeMs: number;
  readonly now: number;
  readonly concurrency: number;
  readonly releases: ReleaseRoots | undefined;
  readonly signal: AbortSignal | undefined;
  readonly refsCache: Map<string, Refs>;
  readonly warnings: Set<string>;
}

/** Written (or linked) within the grace period, or after the run started. */
export function isYoung(run: GcRun, modified: number): boolean {
  return run.now - modified < run.minAgeMs;
}

/** Throws GC_ABORTED once the run's signal fired: called before each storage step. */
export function checkpoint(run: GcRun): void {
  if (run.signal?.aborted) throw new TabbifyError("GC_ABORTED", "the garbage collection was stopped");
}

/** The directory a link or data file sits in: deleting it leaves no empty parent behind. */
export function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `fn` over `items`, `run.concurrency` at a time, stopping at the run's checkpoint; a failure is
 * thrown once the items already started have settled (core/pool.ts).
 */
export async function eachLimit<T>(run: GcRun, items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  await runPool(items, run.concurrency, async (item) => {
    checkpoint(run);
    await fn(item);
  });
}
