import { createHash, timingSafeEqual } from "node:crypto";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { parseAppUuid } from "../core/address.js";
import { bearerToken } from "../core/bearer.js";
import { TabbifyError } from "../core/errors.js";
import type { Store } from "../store/index.js";
import { appRunningAs, environmentOf } from "./app-targets.js";
import { CallerResolver, type TenantTokenVerifier } from "./apps-identity.js";
import { type AppRegistry, appSubject } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import type { NodeKeyCheck } from "./auth.js";
import { callerFirst } from "./caller-first.js";
import { EnvVault, loadOrCreateEnvKey } from "./env-vault.js";
import { envSchemas } from "./schemas/operations.js";

/**
 * `tcli env`: an app's env vars and secrets, per environment (default: the app's first).
 *
 *   GET  /api/v1/apps/:app/env?env=E[&reveal=1]   names; values only with reveal and the node key
 *   POST /api/v1/apps/:app/env                    {env?, set?: {K: V}, unset?: [K]} → names changed
 *   GET  /v1/supervisor/apps/:uuid/env            the supervisors' key only: the values a
 *                                                 workload running as :uuid gets: the app's own
 *                                                 uuid gets its first environment's, an
 *                                                 environment's uuid (core/address.ts) that one's
 *
 * Values are sealed at rest (env-vault.ts). Names go into the audit chain; values never go
 * anywhere but the sealed rows, `--reveal`, and the supervisor that starts the app's workload.
 */

export interface AppEnvRoutesOptions {
  store: Store;
  dataDir: string;
  registry: AppRegistry;
  audit: AuditLog;
  keyCheck: NodeKeyCheck;
  verifyTenantToken: TenantTokenVerifier | undefined;
  supervisorKey: string | undefined;
}

export async function registerAppEnvRoutes(app: FastifyInstance, opts: AppEnvRoutesOptions): Promise<void> {
  // Handlers take their params, query and body types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  const vault = new EnvVault(opts.store, await loadOrCreateEnvKey(opts.dataDir));
  const callers = new CallerResolver({
    keyCheck: opts.keyCheck,
    ...(opts.verifyTenantToken ? { verifyTenantToken: opts.verifyTenantToken } : {}),
  });
  const supervisorDigest = opts.supervisorKey ? sha256(opts.supervisorKey) : undefined;
  const who = callerFirst((req) => callers.resolve(req.headers.authorization));

  const listRoute = { schema: envSchemas.list, onRequest: who.onRequest };
  typed.get("/api/v1/apps/:app/env", listRoute, async (req, reply) => {
    const caller = who.caller(req);
    const target = await opts.registry.get(caller, req.params.app);
    const { environment } = environmentOf(target, req.query.env);
    const reveal = req.query.reveal === "1" || req.query.reveal === "true";
    if (reveal && caller.tenant !== undefined) {
      throw new TabbifyError("FORBIDDEN", "values are shown only to the node key (--reveal)");
    }
    void reply.header("cache-control", "no-store");
    const vars = await vault.names(target.uuid, environment);
    return {
      app: target.name,
      uuid: target.uuid,
      environment,
      vars,
      ...(reveal ? { values: await vault.values(target.uuid, environment) } : {}),
    };
  });

  const changeRoute = { schema: envSchemas.change, onRequest: who.onRequest };
  typed.post("/api/v1/apps/:app/env", changeRoute, async (req) => {
    const caller = who.caller(req);
    const target = await opts.registry.get(caller, req.params.app);
    const body = req.body ?? {};
    const { environment } = environmentOf(target, body.env);
    const changed = await vault.change(target.uuid, environment, body.set ?? {}, body.unset ?? []);
    await opts.audit.record({
      actor: caller.actor,
      action: "app.env.change",
      subject: appSubject(target.name),
      after: { uuid: target.uuid, environment, ...changed },
    });
    return { app: target.name, uuid: target.uuid, environment, ...changed };
  });

  const supervisorOnly = async (req: FastifyRequest) => {
    if (!supervisorDigest) {
      throw new TabbifyError(
        "SUPERVISOR_KEY_NOT_SET",
        "this node has no supervisor key, so it hands out no env",
      );
    }
    const presented = bearerToken(req.headers.authorization);
    if (presented === undefined || !timingSafeEqual(sha256(presented), supervisorDigest)) {
      throw new TabbifyError("UNAUTHORIZED", "this route takes the supervisors' key");
    }
  };
  typed.get(
    "/v1/supervisor/apps/:uuid/env",
    { schema: envSchemas.forSupervisor, onRequest: supervisorOnly },
    async (req, reply) => {
      const uuid = parseAppUuid(req.params.uuid);
      void reply.header("cache-control", "no-store");
      const runs = await appRunningAs(opts.registry, uuid);
      if (!runs) return { env: {} };
      return { env: await vault.values(runs.app.uuid, runs.environment) };
    },
  );
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}
