import { access } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import { rotatedPath } from "../runner/log-rotation.js";
import { logStream } from "./log-stream.js";
import { supervisorSchemas } from "./schemas.js";

/**
 * `GET /v1/apps/:uuid/logs?tail=N&follow=1`: the app's runner log (its workload's stdout and
 * stderr) as text/plain, the last N lines (default 100) across the rotated `.1` and the live
 * file, then, with follow, what is appended until the caller hangs up. Behind the API key like
 * every other app route.
 */

export const LOG_TAIL_DEFAULT = 100;
export const LOG_TAIL_MAX = 10_000;

/** `tail` and `follow` from a query string, shared with the node's merged route. */
export function logQuery(query: unknown): { tail: number; follow: boolean } {
  const q = (query ?? {}) as Record<string, unknown>;
  let tail = LOG_TAIL_DEFAULT;
  if (q.tail !== undefined) {
    if (typeof q.tail !== "string" || !/^\d{1,6}$/.test(q.tail) || Number(q.tail) > LOG_TAIL_MAX) {
      throw new TabbifyError("BAD_REQUEST", `tail must be a whole number up to ${LOG_TAIL_MAX}`);
    }
    tail = Number(q.tail);
  }
  const f = q.follow;
  if (f !== undefined && f !== "" && f !== "0" && f !== "1" && f !== "true" && f !== "false") {
    throw new TabbifyError("BAD_REQUEST", "follow must be 1 or 0");
  }
  return { tail, follow: f === "" || f === "1" || f === "true" };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export function registerLogsRoute(app: FastifyInstance, logPath: (uuid: string) => string): void {
  app.get<{ Params: { uuid: string } }>(
    "/v1/apps/:uuid/logs",
    { schema: supervisorSchemas.logs },
    async (req, reply) => {
      const uuid = parseAppUuid(req.params.uuid);
      const { tail, follow } = logQuery(req.query);
      const path = logPath(uuid);
      if (!(await exists(path)) && !(await exists(rotatedPath(path)))) {
        throw new TabbifyError("APP_NOT_FOUND", `no log for app ${uuid} on this supervisor`, { uuid });
      }
      const hangUp = new AbortController();
      reply.raw.on("close", () => hangUp.abort());
      const stream = await logStream(path, { tail, follow, signal: hangUp.signal });
      return reply.type("text/plain; charset=utf-8").header("cache-control", "no-store").send(stream);
    },
  );
}
