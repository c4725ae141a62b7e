import { TabbifyError } from "./errors.js";

const unitSeconds: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * A duration flag's value: `90s`, `15m`, `24h`, `7d` or plain seconds → seconds. Throws USAGE
 * naming `--<flag>` when it is not one, or when it is outside [min, max] seconds.
 */
export function parseDurationSeconds(
  value: string,
  flag: string,
  range: { min: number; max: number; hint?: string },
): number {
  const m = /^(\d{1,12})([smhd]?)$/.exec(value.trim());
  const seconds = m ? Number(m[1]) * (unitSeconds[m[2] || "s"] ?? 1) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < range.min || seconds > range.max) {
    throw new TabbifyError(
      "USAGE",
      `--${flag} wants a duration like 90s, 15m, 24h, 7d or plain seconds${range.hint ? ` (${range.hint})` : ""}, got "${value.slice(0, 40)}"`,
    );
  }
  return seconds;
}
