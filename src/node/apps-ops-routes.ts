import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { RosterCoordinator } from "../mesh/coordinator.js";
import { SupervisorApi, supervisorRefusal } from "../supervisor/client.js";
import { appTargets, environmentOf } from "./app-targets.js";
import { CallerResolver, type TenantTokenVerifier } from "./apps-identity.js";
import { type AppRegistry, appSubject } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import type { NodeKeyCheck } from "./auth.js";
import { appOpSchema } from "./schemas/apps.js";

/**
 * Operations on a registered app's runtime (node key, or a tenant token for its own apps):
 *
 *   POST /api/v1/apps/:app/stop    stop it on every target
 *   POST /api/v1/apps/:app/start   start it again on every target
 *   POST /api/v1/apps/:app/purge   stop it and remove its records on every target
 *   POST /api/v1/apps/:app/restart zero-downtime swap to the same release on every target
 *
 * The node forwards each to the app's supervisors with the supervisors' key and audits what it
 * asked and what each target answered (never a key). Targets: see app-targets.ts. A target that
 * failed to start or swap answers with the last lines of the app's log (`log_tail`).
 */

export interface AppOpsRoutesOptions {
  registry: AppRegistry;
  audit: AuditLog;
  keyCheck: NodeKeyCheck;
  verifyTenantToken: TenantTokenVerifier | undefined;
  coordinator: RosterCoordinator;
  supervisorKey: string | undefined;
}

export interface TargetAnswer {
  supervisor: string;
  ok: boolean;
  status: number | null;
  state?: string;
  error?: string;
  /** The last lines the app (runner and workload) wrote, when the target failed to run it. */
  log_tail?: string[];
}

const OPS = ["stop", "start", "purge", "restart"] as const;
const LOG_TAIL_LINES = 20;
type Op = (typeof OPS)[number];

export function registerAppOpsRoutes(app: FastifyInstance, opts: AppOpsRoutesOptions): void {
  // Handlers take their params, query and body types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  const callers = new CallerResolver({
    keyCheck: opts.keyCheck,
    ...(opts.verifyTenantToken ? { verifyTenantToken: opts.verifyTenantToken } : {}),
  });
  const stoppedOn = new Map<string, Set<string>>();
  for (const op of OPS) {
    typed.post(`/api/v1/apps/:app/${op}`, { schema: appOpSchema(op) }, async (req) => {
      const caller = await callers.resolve(req.headers.authorization);
      const target = await opts.registry.get(caller, req.params.app);
      const { environment, runAs } = environmentOf(target, req.query.env);
      const names = await appTargets({
        uuid: runAs,
        servers: target.servers,
        coordinator: opts.coordinator,
        supervisorKey: opts.supervisorKey,
        remembered: stoppedOn.get(runAs) ?? [],
      });
      const addresses = new Map(opts.coordinator.supervisors().map((s) => [s.name, s.address]));
      const targets = await Promise.all(
        names.map((name) => forward(name, addresses.get(name), op, runAs, opts.supervisorKey)),
      );
      const reached = targets.filter((t) => t.ok).map((t) => t.supervisor);
      if (op === "stop") stoppedOn.set(runAs, new Set([...(stoppedOn.get(runAs) ?? []), ...reached]));
      if (op === "start" || op === "purge") stoppedOn.delete(runAs);
      await opts.audit.record({
        actor: caller.actor,
        action: `app.${op}`,
        subject: appSubject(target.name),
        // Never the log tail: it is the app's own output, which may carry anything.
        after: {
          uuid: target.uuid,
          environment,
          targets: targets.map(({ log_tail: _tail, ...t }) => t),
        },
      });
      return { app: target.name, uuid: target.uuid, environment, run_as: runAs, action: op, targets };
    });
  }
}

async function forward(
  name: string,
  address: string | undefined,
  op: Op,
  uuid: string,
  supervisorKey: string | undefined,
): Promise<TargetAnswer> {
  if (!address) return { supervisor: name, ok: false, status: null, error: "not on the roster" };
  try {
    const body = await new SupervisorApi({ baseUrl: address, authToken: supervisorKey }).appOp(uuid, op, {
      timeoutMs: 60_000,
    });
    const answer: TargetAnswer = { supervisor: name, ok: true, status: 200 };
    if (typeof body.state === "string") answer.state = body.state;
    return answer;
  } catch (err) {
    const refused = supervisorRefusal(err);
    if (refused && err instanceof Error) {
      const answer: TargetAnswer = {
        supervisor: name,
        ok: false,
        status: refused.status,
        error: err.message.slice(0, 500),
      };
      const tail = refused.runner_log_tail;
      if (tail !== undefined && tail.trim() !== "")
        answer.log_tail = tail.trimEnd().split("\n").slice(-LOG_TAIL_LINES);
      return answer;
    }
    return {
      supervisor: name,
      ok: false,
      status: null,
      error: err instanceof Error ? err.message : String(err),
    };
  }
}
