/**
 * This process's log format, level and sink, kept apart from the pino-based loggers (log.ts) so a
 * process can settle them before it pays for loading pino (the runner starts its workload first).
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "pretty" | "json";
export const LOG_LEVELS: readonly (LogLevel | "silent")[] = ["debug", "info", "warn", "error", "silent"];
export const LOG_FORMATS: readonly LogFormat[] = ["pretty", "json"];

export interface LogSettings {
  format: LogFormat;
  level: LogLevel | "silent";
  /** Where finished lines go; stderr unless said otherwise. */
  write: (line: string) => void;
  /** False when something downstream stamps each line already (the runner's log, log-stamp.ts). */
  time: boolean;
}

export const defaultLogSettings: LogSettings = {
  format: "pretty",
  level: "info",
  write: (line) => process.stderr.write(line),
  time: true,
};
let processSettings: LogSettings = defaultLogSettings;
let generation = 0;

/** Sets this process's log format, level and sink; loggers made afterwards use them. */
export function configureLogging(settings: Partial<LogSettings>): void {
  processSettings = { ...processSettings, ...settings };
  generation++;
}

export function loggingSettings(): Readonly<LogSettings> {
  return processSettings;
}

/** Changes each time configureLogging runs (log.ts rebuilds its root then). */
export function loggingGeneration(): number {
  return generation;
}
