import { join } from "node:path";
import type { BackoffPolicy } from "./backoff.js";
import type { RecordStore } from "./records.js";
import type { SparePool } from "./spares.js";
import type { SupervisorOptions } from "./supervisor.js";

/**
 * What the supervisor's parts (lifecycle.ts, reconcile.ts) share: one object built by the
 * Supervisor and handed to each function explicitly, so no part reaches into another's state.
 */
export interface SupervisorContext {
  readonly opts: SupervisorOptions;
  readonly records: RecordStore;
  readonly backoff: BackoffPolicy;
  readonly spares: SparePool | undefined;
  readonly locks: AppLocks;
  /** Why an app's control socket was refused adoption; shown in its row until it is adopted or respawned. */
  readonly adoptionErrors: Map<string, string>;
  /** Called when a runner this supervisor spawned exits (its death is reconciled at once). */
  runnerExited(uuid: string, pid: number): void;
}

export function logPath(ctx: SupervisorContext, uuid: string): string {
  return join(ctx.records.dir, `${uuid}.log`);
}

/** Serializes everything that changes one app: API calls and reconcile passes alike. */
export class AppLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(uuid: string, step: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(uuid) ?? Promise.resolve();
    const run = previous.then(step, step);
    const tail = run.catch(() => {});
    this.tails.set(uuid, tail);
    tail.then(() => {
      if (this.tails.get(uuid) === tail) this.tails.delete(uuid);
    });
    return run;
  }
}
