import type { FastifyInstance } from "fastify";
import { parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { pathExists } from "../core/exists.js";
import { parseSince } from "../core/since.js";
import { rotatedPath } from "../runner/log-rotation.js";
import { logStream } from "./log-stream.js";
import { supervisorSchemas } from "./schemas.js";

/**
 * `GET /v1/apps/:uuid/logs?tail=N&follow=1&since=10m&timestamps=1`: the app's runner log (its
 * workload's stdout and stderr) as text/plain, the last N lines (default 100) across the rotated
 * `.1` and the live file, or with `since` (and no tail) every line since then, then, with follow,
 * what is appended until the caller hangs up. `timestamps=1` keeps each line's stamp (the time
 * the runner received it). Behind the API key like every other app route.
 */

export const LOG_TAIL_DEFAULT = 100;
export const LOG_TAIL_MAX = 10_000;

/** What a log route was asked for, shared with the node's merged route. */
export interface LogQuery {
  /** Undefined when not given: 100 lines, or with `since` every line since then. */
  tail: number | undefined;
  follow: boolean;
  /** ms since the epoch. */
  since: number | undefined;
  timestamps: boolean;
}

const flagValues = new Set(["", "0", "1", "true", "false"]);
const isOn = (v: unknown) => v === "" || v === "1" || v === "true";

/** `tail`, `follow`, `since` and `timestamps` from a query string. */
export function logQuery(query: unknown): LogQuery {
  const q = (query ?? {}) as Record<string, unknown>;
  let tail: number | undefined;
  if (q.tail !== undefined) {
    if (typeof q.tail !== "string" || !/^\d{1,6}$/.test(q.tail) || Number(q.tail) > LOG_TAIL_MAX) {
      throw new TabbifyError("BAD_REQUEST", `tail must be a whole number up to ${LOG_TAIL_MAX}`);
    }
    tail = Number(q.tail);
  }
  for (const name of ["follow", "timestamps"]) {
    if (q[name] !== undefined && !flagValues.has(q[name] as string)) {
      throw new TabbifyError("BAD_REQUEST", `${name} must be 1 or 0`);
    }
  }
  let since: number | undefined;
  if (q.since !== undefined) {
    if (typeof q.since !== "string") throw new TabbifyError("BAD_REQUEST", "since must be a string");
    since = parseSince(q.since);
  }
  return { tail, follow: isOn(q.follow), since, timestamps: isOn(q.timestamps) };
}

/** The query string that asks a supervisor for the same view (since as an exact instant). */
export function logQueryString(q: Pick<LogQuery, "follow"> & Partial<LogQuery>): string {
  const params = new URLSearchParams({ follow: q.follow ? "1" : "0" });
  if (q.tail !== undefined) params.set("tail", String(q.tail));
  if (q.since !== undefined) params.set("since", new Date(q.since).toISOString());
  if (q.timestamps) params.set("timestamps", "1");
  return params.toString();
}

export function registerLogsRoute(app: FastifyInstance, logPath: (uuid: string) => string): void {
  app.get<{ Params: { uuid: string } }>(
    "/v1/apps/:uuid/logs",
    { schema: supervisorSchemas.logs },
    async (req, reply) => {
      const uuid = parseAppUuid(req.params.uuid);
      const view = logQuery(req.query);
      const path = logPath(uuid);
      if (!(await pathExists(path)) && !(await pathExists(rotatedPath(path)))) {
        throw new TabbifyError("APP_NOT_FOUND", `no log for app ${uuid} on this supervisor`, { uuid });
      }
      const hangUp = new AbortController();
      reply.raw.on("close", () => hangUp.abort());
      const stream = await logStream(path, { ...view, signal: hangUp.signal });
      return reply.type("text/plain; charset=utf-8").header("cache-control", "no-store").send(stream);
    },
  );
}
