import { TabbifyError } from "../core/errors.js";
import {
  configureLogging,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  type LogSettings,
} from "../core/log-settings.js";
import type { OptionSpec } from "./flags.js";

/**
 * `--log-format` and `--log-level`, shared by every long-running role (node, supervisor and its
 * builder and mesh joiner, runner, registry, auth, `up`). Flag over env over default, like every
 * option; `up` hands its choice to each role it starts, and a supervisor to its runners.
 */
export const logOptions: OptionSpec[] = [
  {
    flag: "log-format",
    env: "TABBIFY_LOG_FORMAT",
    default: "pretty",
    help: "pretty (one line per event: time level component message {fields}) or json (one object per line)",
  },
  {
    flag: "log-level",
    env: "TABBIFY_LOG_LEVEL",
    default: "info",
    help: "the least severe level written: debug, info, warn, error or silent",
  },
];

export interface ChosenLogging {
  format: LogFormat;
  level: LogLevel | "silent";
}

/** Checks both values (a USAGE error names the flag) and makes them this process's. */
export function applyLogOptions(
  values: Record<string, string | undefined>,
  extra: Partial<Omit<LogSettings, "format" | "level">> = {},
): ChosenLogging {
  const format = values["log-format"] ?? "pretty";
  const level = values["log-level"] ?? "info";
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new TabbifyError(
      "USAGE",
      `--log-format wants ${LOG_FORMATS.join(" or ")}, got "${format.slice(0, 40)}"`,
    );
  }
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new TabbifyError(
      "USAGE",
      `--log-level wants one of ${LOG_LEVELS.join(", ")}, got "${level.slice(0, 40)}"`,
    );
  }
  const chosen = { format: format as LogFormat, level: level as LogLevel | "silent" };
  configureLogging({ ...extra, ...chosen });
  return chosen;
}

/** The flags that hand `chosen` on to a child role. */
export function logArgs(chosen: ChosenLogging): string[] {
  return ["--log-format", chosen.format, "--log-level", chosen.level];
}
