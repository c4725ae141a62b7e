import type { FastifyBaseLogger } from "fastify";
import pino from "pino";
import {
  defaultLogSettings,
  type LogLevel,
  type LogSettings,
  loggingGeneration,
  loggingSettings,
} from "./log-settings.js";

export type { LogFormat, LogLevel, LogSettings } from "./log-settings.js";

/**
 * Every long-running process logs through one pino root, in one format: `pretty` (one line per
 * event: `time level component message {fields}`) or `json` (one JSON object per line: `time`,
 * `level` as a word, `component`, `msg`, then the fields). The composition root (src/main/) picks
 * the format and level once, from `--log-format`/`--log-level` (src/main/log-options.ts, stored in
 * log-settings.ts); fastify's request logs go through the same root (`httpLogger`). Never pass
 * secret values as fields.
 */

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

let processRoot: { root: pino.Logger; generation: number } | undefined;

const omitted = new Set(["time", "level", "component", "msg"]);

/** One pino JSON line as the pretty format shows it. */
function prettyLine(json: string, time: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!omitted.has(k)) fields[k] = v;
  const extra = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : "";
  const head = time ? `${String(o.time)} ` : "";
  return `${head}${String(o.level)} ${String(o.component ?? "-")} ${String(o.msg ?? "")}${extra}\n`;
}

function buildRoot(s: LogSettings): pino.Logger {
  const destination =
    s.format === "json"
      ? { write: (line: string) => s.write(line) }
      : { write: (line: string) => s.write(prettyLine(line, s.time)) };
  return pino(
    {
      level: s.level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

function rootOf(): pino.Logger {
  if (processRoot?.generation !== loggingGeneration()) {
    processRoot = { root: buildRoot(loggingSettings()), generation: loggingGeneration() };
  }
  return processRoot.root;
}

/**
 * The pino logger fastify gets as `loggerInstance`, tagged with `component`. `level` narrows it
 * (a node's request log can be quieter than the process); it never makes it chattier.
 */
export function httpLogger(component: string, level?: LogLevel): FastifyBaseLogger {
  const root = rootOf();
  const child = root.child({ component });
  if (level !== undefined && pino.levels.values[level]! > root.levelVal) child.level = level;
  return child;
}

function wrap(root: pino.Logger, component: string): Logger {
  const p = root.child({ component });
  const emit = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (fields && Object.keys(fields).length > 0) p[lvl](fields, msg);
    else p[lvl](msg);
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    child: (c) => wrap(root, `${component}.${c}`),
  };
}

/**
 * A logger for `component`. Without `level` and `write` it is the process's (configureLogging);
 * with them, a standalone pretty one (tests collect its lines).
 */
export function createLogger(component: string, level?: LogLevel, write?: (line: string) => void): Logger {
  if (level === undefined && write === undefined) return wrap(rootOf(), component);
  return wrap(
    buildRoot({ ...defaultLogSettings, level: level ?? "info", ...(write ? { write } : {}) }),
    component,
  );
}

export const silentLogger: Logger = wrap(buildRoot({ ...defaultLogSettings, level: "silent" }), "silent");

/**
 * Passes on one line a child process wrote (`tabbify up` echoing its roles), in this process's
 * format: `[source] line` when pretty; when json, a child's JSON line as it is and any other line
 * (a banner on its stdout) as one JSON event, so the whole stream stays one object per line.
 */
export function relayLine(source: string, line: string): void {
  const s = loggingSettings();
  if (s.format === "pretty") {
    s.write(`[${source}] ${line}\n`);
  } else if (isJsonObject(line)) {
    s.write(`${line}\n`);
  } else {
    s.write(
      `${JSON.stringify({ level: "info", time: new Date().toISOString(), component: source, msg: line })}\n`,
    );
  }
}

function isJsonObject(line: string): boolean {
  if (!line.startsWith("{")) return false;
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}
