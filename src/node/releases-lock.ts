import { TabbifyError } from "../core/errors.js";
import type { Store } from "../store/index.js";

/**
 * One rollout per (app, environment) at a time, held in the store so every node sharing it sees
 * the same lock and a restart does not forget it. A holder that died leaves the lock behind until
 * it expires; the next caller then takes it over.
 */
export class DeployLock {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #now: () => Date;

  constructor(store: Store, opts: { ttlMs?: number; now?: () => Date } = {}) {
    this.#store = store;
    this.#ttlMs = opts.ttlMs ?? 15 * 60_000;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Takes the lock for `holder`, or throws DEPLOY_LOCKED naming the one who has it. */
  async acquire(app: string, environment: string, holder: string): Promise<void> {
    const now = this.#now();
    await this.#store.transaction(async (trx) => {
      await this.#store.serialize(trx, `deploy-lock:${app}:${environment}`);
      const held = await trx
        .selectFrom("deploy_locks")
        .selectAll()
        .where("app_uuid", "=", app)
        .where("environment", "=", environment)
        .executeTakeFirst();
      if (held && held.holder !== holder && held.expires_at > now.toISOString()) {
        throw new TabbifyError(
          "DEPLOY_LOCKED",
          `${environment} of this app is being rolled out by ${held.holder} (since ${held.acquired_at})`,
          { holder: held.holder, acquired_at: held.acquired_at, expires_at: held.expires_at },
        );
      }
      if (held) {
        await trx
          .deleteFrom("deploy_locks")
          .where("app_uuid", "=", app)
          .where("environment", "=", environment)
          .execute();
      }
      await trx
        .insertInto("deploy_locks")
        .values({
          app_uuid: app,
          environment,
          holder,
          acquired_at: now.toISOString(),
          expires_at: new Date(now.getTime() + this.#ttlMs).toISOString(),
        })
        .execute();
    });
  }

  /** Lets go of the lock if `holder` still has it. */
  async release(app: string, environment: string, holder: string): Promise<void> {
    await this.#store.db
      .deleteFrom("deploy_locks")
      .where("app_uuid", "=", app)
      .where("environment", "=", environment)
      .where("holder", "=", holder)
      .execute();
  }

  /** Runs `fn` holding the lock, and lets go of it however `fn` ends. */
  async with<T>(app: string, environment: string, holder: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(app, environment, holder);
    try {
      return await fn();
    } finally {
      await this.release(app, environment, holder);
    }
  }
}
