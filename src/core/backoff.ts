/**
 * Exponential backoff, the one formula: the delay before retry number `attempt` (1 for the first
 * retry) starts at `baseMs`, doubles each attempt, and never exceeds `capMs`.
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number): number {
  // Past 2 ** 52 the product is beyond any cap anyway; clamping keeps it finite.
  const doublings = Math.min(Math.max(0, Math.floor(attempt) - 1), 52);
  return Math.min(baseMs * 2 ** doublings, capMs);
}
