import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { TabbifyError } from "../core/errors.js";
import { verifyChainAsync } from "../ledger/chain.js";
import type { Store } from "../store/index.js";
import type { CallerResolver } from "./apps-identity.js";
import { auditEventFromRow, readAuditChain } from "./audit-log.js";
import { auditEventsSchema, auditVerifySchema } from "./schemas/audit-view.js";

/**
 * The audit views the dashboard reads (node key only, a tenant's token is 403: the chain holds every
 * tenant's events):
 *
 *   GET /v1/audit/events?before=&limit=&actor=&action=&app=   newest first, filtered
 *   GET /v1/audit/verify                                       the node's own verdict on the chain
 *
 * Events come back as stored, before/after parsed (the browser recomputes each hash from them).
 */

export interface AuditRoutesOptions {
  store: Store;
  callers: CallerResolver;
}

const PAGE_DEFAULT = 50;
const PAGE_MAX = 200;

export function registerAuditRoutes(app: FastifyInstance, opts: AuditRoutesOptions): void {
  const { store, callers } = opts;
  // Handlers take their query types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();

  typed.get("/v1/audit/events", { schema: auditEventsSchema }, async (req) => {
    await callers.admin(req.headers.authorization);
    const q = req.query;
    const limit = Math.max(1, Number(q.limit ?? PAGE_DEFAULT));
    if (limit > PAGE_MAX)
      throw new TabbifyError("BAD_REQUEST", `limit must be a whole number up to ${PAGE_MAX}`);
    let query = store.db.selectFrom("audit_events").selectAll().orderBy("seq", "desc").limit(limit);
    if (q.before !== undefined) query = query.where("seq", "<", Number(q.before));
    if (q.actor) query = query.where("actor", "=", q.actor);
    if (q.action) query = query.where("action", "=", q.action);
    const appName = q.app;
    if (appName) {
      query = query.where((eb) =>
        eb.or([eb("subject", "=", `app:${appName}`), eb("subject", "like", `project:%/${appName}`)]),
      );
    }
    const rows = await query.execute();
    const events = rows.map(auditEventFromRow);
    const body: { events: typeof events; next_before?: number } = { events };
    if (events.length === limit) body.next_before = events.at(-1)!.seq;
    return body;
  });

  typed.get("/v1/audit/verify", { schema: auditVerifySchema }, async (req) => {
    await callers.admin(req.headers.authorization);
    return verifyChainAsync(readAuditChain(store));
  });
}
