import assert from "node:assert/strict";
import { test } from "node:test";
import {
  afterFailure,
  afterHealthy,
  defaultBackoff,
  dueForRetry,
  restartStatus,
  retryDelayMs,
} from "./backoff.js";
import { freshRestartState, type RestartState } from "./records.js";

test("a first failure respawns at once; then delays double from 10 s and cap at 300 s", () => {
  const delays = [1, 2, 3, 4, 5, 6, 7, 8, 20, 2000].map((f) => retryDelayMs(f, defaultBackoff));
  assert.deepEqual(delays, [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000]);
  assert.equal(retryDelayMs(0, defaultBackoff), 0);
});

test("failures walk running → backoff → crashloop at 5 → parked at 10", () => {
  let state: RestartState = freshRestartState();
  const seen: string[] = [];
  let parkedAt = -1;
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  for (let i = 1; i <= 10; i++) {
    const now = t0 + i * 1000;
    const next = afterFailure(state, now, defaultBackoff);
    state = next.restart;
    seen.push(restartStatus(state, defaultBackoff));
    if (next.parked && parkedAt < 0) parkedAt = i;
    assert.equal(state.last_exit_at, new Date(now).toISOString());
    if (!next.parked) {
      assert.equal(Date.parse(state.next_retry_at!) - now, retryDelayMs(i, defaultBackoff));
      assert.equal(dueForRetry(state, now), i === 1, "only a first failure is due at once");
      assert.equal(dueForRetry(state, Date.parse(state.next_retry_at!)), true);
    }
  }
  assert.deepEqual(seen, [
    "backoff",
    "backoff",
    "backoff",
    "backoff",
    "crashloop",
    "crashloop",
    "crashloop",
    "crashloop",
    "crashloop",
    "crashloop",
  ]);
  assert.equal(parkedAt, 10);
  assert.equal(state.next_retry_at, null);
  assert.equal(restartStatus(freshRestartState(), defaultBackoff), "running");
});

test("failures reset only after the stable window", () => {
  const failed = afterFailure(
    afterFailure(freshRestartState(), 0, defaultBackoff).restart,
    1,
    defaultBackoff,
  ).restart;
  const spawned = 100_000;
  const early = afterHealthy(failed, spawned, spawned + 59_999, defaultBackoff);
  assert.equal(early.consecutive_failures, 2);
  assert.equal(early.last_healthy_at, new Date(spawned + 59_999).toISOString());
  const stable = afterHealthy(failed, spawned, spawned + 60_000, defaultBackoff);
  assert.equal(stable.consecutive_failures, 0);
  assert.equal(stable.next_retry_at, null);
});
