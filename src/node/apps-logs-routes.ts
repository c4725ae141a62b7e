import { PassThrough } from "node:stream";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import { type LogQuery, logQuery } from "../supervisor/logs-route.js";
import { appTargets, environmentOf } from "./app-targets.js";
import { CallerResolver, type TenantTokenVerifier } from "./apps-identity.js";
import type { AppRegistry } from "./apps-registry.js";
import type { NodeKeyCheck } from "./auth.js";
import { appLogsSchema } from "./schemas/apps.js";

/**
 * `GET /api/v1/apps/:app/logs?tail=N&follow=1&env=E&since=10m&timestamps=1` (node key, or a
 * tenant token for its own apps): the runtime output of the app's workloads in environment E
 * (default: the app's own uuid) from every target, merged line by line as it arrives, each line
 * prefixed `<supervisor> | `. `since` (a duration back from the node's clock, or a time) is sent
 * on to each supervisor as an exact time. The node asks each supervisor's `GET /v1/apps/:uuid/logs` with the
 * supervisors' key and streams; nothing is buffered whole. A target that cannot answer gets one
 * `<supervisor> ! …` line saying why.
 */

export interface AppLogsRoutesOptions {
  registry: AppRegistry;
  keyCheck: NodeKeyCheck;
  verifyTenantToken: TenantTokenVerifier | undefined;
  coordinator: RosterCoordinator;
  supervisorKey: string | undefined;
}

export function registerAppLogsRoutes(app: FastifyInstance, opts: AppLogsRoutesOptions): void {
  const callers = new CallerResolver({
    keyCheck: opts.keyCheck,
    ...(opts.verifyTenantToken ? { verifyTenantToken: opts.verifyTenantToken } : {}),
  });
  app.get<{ Params: { app: string }; Querystring: { env?: string } }>(
    "/api/v1/apps/:app/logs",
    { schema: appLogsSchema },
    async (req, reply) => {
      const caller = await callers.resolve(req.headers.authorization);
      const target = await opts.registry.get(caller, req.params.app);
      const view = logQuery(req.query);
      const { runAs } = environmentOf(target, req.query.env);
      const names = await appTargets({
        uuid: runAs,
        servers: target.servers,
        coordinator: opts.coordinator,
        supervisorKey: opts.supervisorKey,
      });
      if (names.length === 0) {
        throw new TabbifyError(
          "APP_NOT_RUNNING",
          `app ${target.name} has no targets yet: deploy or start it first`,
        );
      }
      const addresses = new Map(opts.coordinator.supervisors().map((s) => [s.name, s.address]));
      const hangUp = new AbortController();
      reply.raw.on("close", () => hangUp.abort());
      const out = new PassThrough();
      const streams = names.map((name) =>
        pipeTarget(name, addresses.get(name), runAs, view, opts.supervisorKey, out, hangUp.signal),
      );
      void Promise.allSettled(streams).then(() => out.end());
      return reply.type("text/plain; charset=utf-8").header("cache-control", "no-store").send(out);
    },
  );
}

/** Copies one supervisor's log stream into `out`, a whole line at a time, prefixed. */
async function pipeTarget(
  name: string,
  address: string | undefined,
  uuid: string,
  query: LogQuery,
  supervisorKey: string | undefined,
  out: PassThrough,
  signal: AbortSignal,
): Promise<void> {
  const say = (line: string) => {
    if (!out.writableEnded) out.write(`${name} ! ${line}\n`);
  };
  if (!address) return say("not on the roster: its logs are unreachable");
  let stream: ReadableStream<Uint8Array>;
  try {
    stream = await new SupervisorApi({ baseUrl: address, authToken: supervisorKey }).logs(uuid, query, {
      signal,
    });
  } catch (err) {
    const refused = supervisorRefusal(err);
    if (refused) {
      return say(
        refused.status === 404 ? "no log for this app here" : `logs unavailable (HTTP ${refused.status})`,
      );
    }
    if (!signal.aborted) say(`logs unavailable (${err instanceof Error ? err.message : String(err)})`);
    return;
  }
  const decoder = new TextDecoder();
  let partial = "";
  try {
    for await (const chunk of stream) {
      partial += decoder.decode(chunk as Uint8Array, { stream: true });
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      if (lines.length > 0 && !out.writableEnded) out.write(lines.map((l) => `${name} | ${l}\n`).join(""));
    }
    if (partial !== "" && !out.writableEnded) out.write(`${name} | ${partial}\n`);
  } catch (err) {
    if (!signal.aborted) say(`log stream broke (${err instanceof Error ? err.message : String(err)})`);
  }
}
