import { TabbifyError } from "../core/errors.js";

/**
 * Per-app mutation locks: mutations of one app run one at a time, in arrival order. A waiter that
 * does not get the lock within the timeout gives up with APP_LOCKED naming who holds it, so a
 * stuck client is told what it waits for instead of hanging.
 */

export interface LockHolder {
  actor: string;
  action: string;
  since: string;
}

interface Waiter {
  holder: LockHolder;
  grant: () => void;
}

interface LockState {
  holder: LockHolder;
  queue: Waiter[];
}

export class AppLocks {
  readonly #locks = new Map<string, LockState>();
  readonly #timeoutMs: number;

  constructor(timeoutMs = 5_000) {
    this.#timeoutMs = timeoutMs;
  }

  /** Runs `fn` holding `key`'s lock. */
  async with<T>(key: string, holder: Omit<LockHolder, "since">, fn: () => Promise<T>): Promise<T> {
    await this.#acquire(key, holder);
    try {
      return await fn();
    } finally {
      this.#release(key);
    }
  }

  holderOf(key: string): LockHolder | undefined {
    return this.#locks.get(key)?.holder;
  }

  #acquire(key: string, who: Omit<LockHolder, "since">): Promise<void> {
    const holder = { ...who, since: "" };
    const state = this.#locks.get(key);
    if (!state) {
      holder.since = new Date().toISOString();
      this.#locks.set(key, { holder, queue: [] });
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        holder,
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const index = state.queue.indexOf(waiter);
        if (index >= 0) state.queue.splice(index, 1);
        const h = state.holder;
        reject(
          new TabbifyError(
            "APP_LOCKED",
            `app ${key} is locked by ${h.actor} (${h.action} since ${h.since}); try again`,
            { holder: h },
          ),
        );
      }, this.#timeoutMs);
      state.queue.push(waiter);
    });
  }

  #release(key: string): void {
    const state = this.#locks.get(key);
    if (!state) return;
    const next = state.queue.shift();
    if (!next) {
      this.#locks.delete(key);
      return;
    }
    next.holder.since = new Date().toISOString();
    state.holder = next.holder;
    next.grant();
  }
}
