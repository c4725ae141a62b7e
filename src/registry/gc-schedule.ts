import type { Logger } from "../core/log.js";
import { collectGarbage } from "./gc.js";
import type { GcReport } from "./gc-report.js";
import { fetchReleaseRoots, loadReleaseCandidates, saveReleaseCandidates } from "./release-roots.js";
import type { RegistryService } from "./repository.js";

/** The collection rules `tabbify registry gc` and the registry's `--gc-interval` runs share. */
export interface GcRules {
  deleteUntagged: boolean;
  minAgeMs: number;
  /** `--keep-releases-from`: the node's URL; absent ⇒ no release rules. */
  keepReleasesFrom?: string;
  /** `--keep-releases`: releases kept per app and environment. */
  keepReleases: number;
  /** `REGISTRY_GC_NODE_TOKEN`: the bearer for the node's release roots. */
  nodeToken?: string;
}

/**
 * One collection under `rules`: with a node, its release roots are fetched now (a node that does
 * not answer stops the run before anything is collected) and the release candidates found
 * unreferenced are remembered in `dataDir` for the next run's second strike.
 */
export async function collectWithRules(
  service: RegistryService,
  dataDir: string,
  rules: GcRules,
  opts: { dryRun?: boolean; signal?: AbortSignal } = {},
): Promise<GcReport> {
  const releases = rules.keepReleasesFrom
    ? {
        repositories: await fetchReleaseRoots(rules.keepReleasesFrom, rules.nodeToken, rules.keepReleases),
        previous: await loadReleaseCandidates(dataDir),
      }
    : undefined;
  const dryRun = opts.dryRun ?? false;
  const report = await collectGarbage(service, {
    dryRun,
    deleteUntagged: rules.deleteUntagged,
    minAgeMs: rules.minAgeMs,
    ...(releases ? { releases } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (releases && !dryRun) await saveReleaseCandidates(dataDir, report.releaseCandidates ?? []);
  return report;
}

/**
 * `--gc-interval`: a collection every `intervalMs` inside the registry, the first one interval
 * after start. The next run is timed from the end of the last, so two never overlap; `close`
 * stops the timer, aborts a run in progress at its next storage call and waits for it to end.
 */
export class GcSchedule {
  readonly #intervalMs: number;
  readonly #run: (signal: AbortSignal) => Promise<GcReport>;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #runs = 0;
  #last: GcReport | undefined;

  constructor(opts: { intervalMs: number; run: (signal: AbortSignal) => Promise<GcReport>; log: Logger }) {
    if (!(opts.intervalMs > 0)) throw new Error("intervalMs must be > 0");
    this.#intervalMs = opts.intervalMs;
    this.#run = opts.run;
    this.#log = opts.log;
  }

  /** Runs finished (or failed) so far, and the last report. */
  get status(): { runs: number; last?: GcReport } {
    return { runs: this.#runs, ...(this.#last ? { last: this.#last } : {}) };
  }

  start(): void {
    if (this.#abort.signal.aborted || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#once().finally(() => {
        this.#running = undefined;
        this.start();
      });
    }, this.#intervalMs);
  }

  async #once(): Promise<void> {
    const started = performance.now();
    try {
      const report = await this.#run(this.#abort.signal);
      this.#last = report;
      this.#log.info("gc run finished", {
        blobs_removed: report.blobsRemoved.length,
        bytes_freed: report.bytesFreed,
        manifests_removed: report.manifestsRemoved.length,
        duration_ms: Math.round(performance.now() - started),
      });
      for (const warning of report.warnings) this.#log.warn("gc warning", { warning });
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#log.warn("gc run failed", { error: String(err) });
    } finally {
      this.#runs++;
    }
  }

  async close(): Promise<void> {
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
