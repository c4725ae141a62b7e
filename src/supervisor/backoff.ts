import { backoffDelay } from "../core/backoff.js";
import type { RestartState } from "./records.js";

/**
 * Restart backoff for runners that die: the first failure respawns at once, then the delay
 * starts at the base and doubles per consecutive failure up to a cap;
 * at `crashloopAt` failures the app reports `crashloop`; at `parkAt` it is parked (no respawn
 * until a redeploy or reset). A runner that stays up for the stable window starts over.
 */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
  stableWindowMs: number;
  crashloopAt: number;
  parkAt: number;
}

export const defaultBackoff: BackoffPolicy = {
  baseMs: 10_000,
  capMs: 300_000,
  stableWindowMs: 60_000,
  crashloopAt: 5,
  parkAt: 10,
};

/**
 * Delay before the respawn that follows the `failures`-th consecutive failure (failures ≥ 1).
 * A first failure respawns at once: a runner killed outright (OOM, a stray kill -9) comes back
 * in well under a second on a warm spare. From the second failure on the delay starts at the
 * base and doubles, so a crash loop still backs off.
 */
export function retryDelayMs(failures: number, policy: BackoffPolicy): number {
  if (failures <= 1) return 0;
  return backoffDelay(failures - 1, policy.baseMs, policy.capMs);
}

/** The state after one more runner death observed at `now`. */
export function afterFailure(
  state: RestartState,
  now: number,
  policy: BackoffPolicy,
): { restart: RestartState; parked: boolean } {
  const failures = state.consecutive_failures + 1;
  const parked = failures >= policy.parkAt;
  return {
    restart: {
      ...state,
      consecutive_failures: failures,
      last_exit_at: new Date(now).toISOString(),
      next_retry_at: parked ? null : new Date(now + retryDelayMs(failures, policy)).toISOString(),
    },
    parked,
  };
}

/** Failures are forgotten once a runner has been up and healthy for the stable window. */
export function afterHealthy(
  state: RestartState,
  spawnedAt: number,
  now: number,
  policy: BackoffPolicy,
): RestartState {
  const stable = now - spawnedAt >= policy.stableWindowMs;
  return {
    ...state,
    last_healthy_at: new Date(now).toISOString(),
    ...(stable ? { consecutive_failures: 0, next_retry_at: null } : {}),
  };
}

export type RestartStatus = "running" | "backoff" | "crashloop";

export function restartStatus(state: RestartState, policy: BackoffPolicy): RestartStatus {
  if (state.consecutive_failures >= policy.crashloopAt) return "crashloop";
  if (state.consecutive_failures > 0) return "backoff";
  return "running";
}

/** True when a dead runner may be respawned now. */
export function dueForRetry(state: RestartState, now: number): boolean {
  return state.next_retry_at === null || Date.parse(state.next_retry_at) <= now;
}
