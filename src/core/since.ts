import { TabbifyError } from "./errors.js";

/**
 * `since` as an instant: an RFC 3339 time (`2026-12-06T06:00:00Z`) or a duration back from now
 * (`90s`, `10m`, `2h`, `7d`). BAD_REQUEST otherwise.
 */
export function parseSince(value: string, now = Date.now()): number {
  const ago = /^(\d{1,9})([smhd])$/.exec(value);
  if (ago) return now - Number(ago[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as "s"];
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d:\d\d)$/.test(value)) {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return at;
  }
  throw new TabbifyError(
    "BAD_REQUEST",
    "since must be a duration back from now (90s, 10m, 2h, 7d) or a time like 2026-12-06T06:00:00Z",
  );
}
