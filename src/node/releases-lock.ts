import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { RolloutLock, RolloutLockHolder } from "../pipeline/deps.js";
import { DEFAULT_ENVIRONMENT, type DeployRequest } from "../pipeline/plan.js";
import type { Store } from "../store/index.js";

/**
 * One rollout per (app, environment) at a time, held in the store so every node sharing it sees
 * the same lock and a restart does not forget it. A rollout that finds the lock taken either
 * fails DEPLOY_LOCKED naming the holder (`wait: false`) or joins the queue, which is served oldest
 * first. A holder that died leaves the lock behind until its node restarts (see `sweep`) or the
 * lock expires; the next caller then takes it over.
 */
export class DeployLock implements RolloutLock {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #pollMs: number;
  readonly #maxWaitMs: number;
  readonly #now: () => Date;

  constructor(
    store: Store,
    opts: { ttlMs?: number; pollMs?: number; maxWaitMs?: number; now?: () => Date } = {},
  ) {
    this.#store = store;
    this.#ttlMs = opts.ttlMs ?? 15 * 60_000;
    this.#pollMs = opts.pollMs ?? 200;
    this.#maxWaitMs = opts.maxWaitMs ?? 30 * 60_000;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Takes the lock for `deployId`. Taken by another: with `wait`, queues (calling `onQueued` once
   * with the holder) until it is this deploy's turn; without, throws DEPLOY_LOCKED naming it.
   * Resolves with how long it queued.
   */
  async acquire(
    app: string,
    environment: string,
    deployId: string,
    holder: string,
    opts: { wait: boolean; onQueued?: (held: RolloutLockHolder) => Promise<void> },
  ): Promise<{ queued_ms: number }> {
    const first = await this.#tryAcquire(app, environment, deployId, holder);
    if (!first) return { queued_ms: 0 };
    if (!opts.wait) throw locked(environment, first);
    const started = performance.now();
    await this.#store.db
      .insertInto("deploy_queue")
      .values({ app_uuid: app, environment, deploy_id: deployId, queued_at: this.#now().toISOString() })
      .execute();
    try {
      await opts.onQueued?.(first);
      for (;;) {
        await sleep(this.#pollMs);
        const held = await this.#tryAcquire(app, environment, deployId, holder);
        if (!held) return { queued_ms: Math.round(performance.now() - started) };
        if (performance.now() - started > this.#maxWaitMs) {
          throw new TabbifyError(
            "DEPLOY_LOCKED",
            `gave up after ${Math.round(this.#maxWaitMs / 1000)} s in the queue: ${locked(environment, held).message}`,
            { holder: held.holder, deploy_id: held.deploy_id },
          );
        }
      }
    } catch (err) {
      await this.#dequeue(app, environment, deployId);
      throw err;
    }
  }

  /** The holder blocking `deployId`, or undefined once `deployId` holds the lock. */
  async #tryAcquire(
    app: string,
    environment: string,
    deployId: string,
    holder: string,
  ): Promise<RolloutLockHolder | undefined> {
    const now = this.#now();
    return this.#store.transaction(async (trx) => {
      await this.#store.serialize(trx, `deploy-lock:${app}:${environment}`);
      const held = await trx
        .selectFrom("deploy_locks")
        .selectAll()
        .where("app_uuid", "=", app)
        .where("environment", "=", environment)
        .executeTakeFirst();
      if (held && held.deploy_id !== deployId && held.expires_at > now.toISOString()) {
        return { holder: held.holder, deploy_id: held.deploy_id, since: held.acquired_at };
      }
      const next = await trx
        .selectFrom("deploy_queue")
        .selectAll()
        .where("app_uuid", "=", app)
        .where("environment", "=", environment)
        .orderBy("queued_at", "asc")
        .orderBy("deploy_id", "asc")
        .limit(1)
        .executeTakeFirst();
      if (next && next.deploy_id !== deployId) {
        return {
          holder: `the queued deploy ${next.deploy_id}`,
          deploy_id: next.deploy_id,
          since: next.queued_at,
        };
      }
      await trx
        .deleteFrom("deploy_locks")
        .where("app_uuid", "=", app)
        .where("environment", "=", environment)
        .execute();
      await trx
        .deleteFrom("deploy_queue")
        .where("app_uuid", "=", app)
        .where("environment", "=", environment)
        .where("deploy_id", "=", deployId)
        .execute();
      await trx
        .insertInto("deploy_locks")
        .values({
          app_uuid: app,
          environment,
          holder,
          deploy_id: deployId,
          acquired_at: now.toISOString(),
          expires_at: new Date(now.getTime() + this.#ttlMs).toISOString(),
        })
        .execute();
      return undefined;
    });
  }

  async #dequeue(app: string, environment: string, deployId: string): Promise<void> {
    await this.#store.db
      .deleteFrom("deploy_queue")
      .where("app_uuid", "=", app)
      .where("environment", "=", environment)
      .where("deploy_id", "=", deployId)
      .execute();
  }

  /** Throws DEPLOY_LOCKED naming the holder (or the next in the queue) when a rollout would wait. */
  async assertFree(app: string, environment: string): Promise<void> {
    const held = await this.#store.db
      .selectFrom("deploy_locks")
      .selectAll()
      .where("app_uuid", "=", app)
      .where("environment", "=", environment)
      .where("expires_at", ">", this.#now().toISOString())
      .executeTakeFirst();
    if (held)
      throw locked(environment, { holder: held.holder, deploy_id: held.deploy_id, since: held.acquired_at });
  }

  /** Lets go of the lock if `deployId` still has it. */
  async release(app: string, environment: string, deployId: string): Promise<void> {
    await this.#store.db
      .deleteFrom("deploy_locks")
      .where("app_uuid", "=", app)
      .where("environment", "=", environment)
      .where("deploy_id", "=", deployId)
      .execute();
  }

  /**
   * Frees the locks and queue places of deploys that ended without letting go (their node died:
   * on restart it closes them as failed before this runs). Returns the locks freed, for the audit.
   */
  async sweep(): Promise<
    Array<{ app_uuid: string; environment: string; deploy_id: string; holder: string }>
  > {
    const ended = (eb: { selectFrom: Store["db"]["selectFrom"] }) =>
      eb.selectFrom("deploys").select("id").where("status", "not in", ["running", "queued"]);
    const stale = await this.#store.db
      .selectFrom("deploy_locks")
      .select(["app_uuid", "environment", "deploy_id", "holder"])
      .where("deploy_id", "in", ended(this.#store.db))
      .execute();
    for (const lock of stale) await this.release(lock.app_uuid, lock.environment, lock.deploy_id as string);
    await this.#store.db.deleteFrom("deploy_queue").where("deploy_id", "in", ended(this.#store.db)).execute();
    return stale.map((l) => ({ ...l, deploy_id: l.deploy_id as string }));
  }
}

function locked(environment: string, held: RolloutLockHolder): TabbifyError {
  return new TabbifyError(
    "DEPLOY_LOCKED",
    `${environment} of this app is being rolled out by ${held.holder} (since ${held.since})`,
    { holder: held.holder, deploy_id: held.deploy_id, since: held.since },
  );
}

/**
 * `?wait=false` on a build's deploy route: the deploy fails DEPLOY_LOCKED instead of queueing and,
 * when the app is known up front, the route answers 409 naming the holder at once.
 */
export async function applyWaitQuery(
  request: DeployRequest,
  query: unknown,
  lock: DeployLock,
): Promise<void> {
  if ((query as { wait?: unknown } | undefined)?.wait !== "false") return;
  request.noQueue = true;
  if (request.appUuid !== undefined) await lock.assertFree(request.appUuid, DEFAULT_ENVIRONMENT);
}
