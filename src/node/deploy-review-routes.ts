import { randomUUID } from "node:crypto";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { ReasonKind } from "../contract/reasons.js";
import { TabbifyError } from "../core/errors.js";
import type { StoreTransaction } from "../store/index.js";
import type { DeployPlansTable } from "../store/tables/deploy-review.js";
import type { CallerResolver } from "./apps-identity.js";
import type { Caller } from "./apps-registry.js";
import type { AuditLog } from "./audit-log.js";
import { callerFirst } from "./caller-first.js";
import { type DeployReviewStore, grantView, planView } from "./deploy-review-store.js";
import { reviewSchemas } from "./schemas/review.js";

/**
 * Review of risky contract expansions (node key, or a tenant token for its own plans and grants;
 * another tenant's plan or grant is 404, so ids reveal nothing):
 *
 *   GET  /v1/deploy/plans/:id                          the plan
 *   POST /v1/deploy/plans/:id/approve {mode, expiresAt?}   once | grant; 409 if decided, 410 if expired
 *   POST /v1/deploy/plans/:id/reject {}
 *   GET  /v1/grants, GET /v1/projects/:name/grants     {grants:[…]}
 *   POST /v1/grants/:id/revoke                         {grant}; 409 if already revoked
 *   GET|PUT /v1/deploy/review-policy {risky:[env|egress|route|effect]}   which reasons need review
 *
 * Every approval, rejection, grant, revocation and policy change is an audit event.
 */

export interface DeployReviewRoutesOptions {
  reviews: DeployReviewStore;
  callers: CallerResolver;
  audit: AuditLog;
  now?: () => Date;
}

/** The tenant a caller acts for; the node key acts as `admin`. */
export function scopeOf(caller: Caller): string {
  return caller.tenant ?? "admin";
}

export function registerDeployReviewRoutes(app: FastifyInstance, opts: DeployReviewRoutesOptions): void {
  const now = opts.now ?? (() => new Date());
  const { reviews, callers, audit } = opts;
  const who = callerFirst((req) => callers.resolve(req.headers.authorization));
  const route = <S>(schema: S) => ({ schema, onRequest: who.onRequest });
  // Handlers take their params, query and body types from the route schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  /** Decides plan `id` once: serialized per plan, refused unless pending; answers the plan after. */
  const decidePending = (
    scope: string,
    id: string,
    decide: (trx: StoreTransaction, plan: DeployPlansTable, at: Date) => Promise<void>,
  ) =>
    reviews.store.transaction(async (trx) => {
      await reviews.store.serialize(trx, `deploy-plan:${id}`);
      const plan = await reviews.plan(trx, scope, id);
      const at = now();
      assertPending(planView(plan, at));
      await decide(trx, plan, at);
      return planView(await reviews.plan(trx, scope, plan.id), at);
    });

  typed.get("/v1/deploy/plans/:id", route(reviewSchemas.plan), async (req) => {
    const caller = who.caller(req);
    return planView(await reviews.plan(undefined, scopeOf(caller), req.params.id), now());
  });

  typed.post("/v1/deploy/plans/:id/approve", route(reviewSchemas.approve), async (req) => {
    const caller = who.caller(req);
    const b = req.body ?? {};
    const mode = b.mode ?? "once";
    let expiresAt: string | null = null;
    if (b.expiresAt !== undefined) {
      // When "the future" starts is the clock's to say, not the schema's.
      const t = Date.parse(b.expiresAt);
      if (!Number.isFinite(t) || t <= now().getTime())
        throw new TabbifyError("BAD_REQUEST", "expiresAt must be an ISO 8601 time in the future");
      expiresAt = new Date(t).toISOString();
    }
    const scope = scopeOf(caller);
    return decidePending(scope, req.params.id, async (trx, plan, at) => {
      let grantId: string | null = null;
      if (mode === "grant") {
        grantId = randomUUID();
        await trx
          .insertInto("deploy_grants")
          .values({
            id: grantId,
            scope,
            project: plan.project,
            source_plan_id: plan.id,
            reasons: plan.reasons,
            created_at: at.toISOString(),
            expires_at: expiresAt,
            revoked_at: null,
          })
          .execute();
      }
      await trx
        .updateTable("deploy_plans")
        .set({
          status: "approved",
          mode,
          grant_id: grantId,
          decided_at: at.toISOString(),
          decided_by: caller.actor,
        })
        .where("id", "=", plan.id)
        .execute();
      const subject = `project:${scope}/${plan.project}`;
      await audit.append(trx, {
        actor: caller.actor,
        action: "deploy.plan.approve",
        subject,
        after: { planId: plan.id, mode, proposedSha: plan.proposed_sha, reasons: JSON.parse(plan.reasons) },
      });
      if (grantId) {
        await audit.append(trx, {
          actor: caller.actor,
          action: "deploy.grant.create",
          subject,
          after: { grantId, sourcePlanId: plan.id, reasons: JSON.parse(plan.reasons), expiresAt },
        });
      }
    });
  });

  typed.post("/v1/deploy/plans/:id/reject", route(reviewSchemas.reject), async (req) => {
    const caller = who.caller(req);
    const scope = scopeOf(caller);
    return decidePending(scope, req.params.id, async (trx, plan, at) => {
      await trx
        .updateTable("deploy_plans")
        .set({ status: "rejected", decided_at: at.toISOString(), decided_by: caller.actor })
        .where("id", "=", plan.id)
        .execute();
      await audit.append(trx, {
        actor: caller.actor,
        action: "deploy.plan.reject",
        subject: `project:${scope}/${plan.project}`,
        after: { planId: plan.id, proposedSha: plan.proposed_sha },
      });
    });
  });

  typed.get("/v1/grants", route(reviewSchemas.grants), async (req) => {
    const caller = who.caller(req);
    const at = now();
    return { grants: (await reviews.grants(scopeOf(caller), undefined)).map((g) => grantView(g, at)) };
  });

  typed.get("/v1/projects/:name/grants", route(reviewSchemas.projectGrants), async (req) => {
    const caller = who.caller(req);
    const at = now();
    return {
      grants: (await reviews.grants(scopeOf(caller), req.params.name)).map((g) => grantView(g, at)),
    };
  });

  typed.post("/v1/grants/:id/revoke", route(reviewSchemas.revoke), async (req) => {
    const caller = who.caller(req);
    const scope = scopeOf(caller);
    return reviews.store.transaction(async (trx) => {
      await reviews.store.serialize(trx, `deploy-grant:${req.params.id}`);
      const grant = await reviews.grant(trx, scope, req.params.id);
      if (grant.revoked_at) throw new TabbifyError("GRANT_CONFLICT", `grant ${grant.id} is already revoked`);
      const at = now().toISOString();
      await trx.updateTable("deploy_grants").set({ revoked_at: at }).where("id", "=", grant.id).execute();
      await audit.append(trx, {
        actor: caller.actor,
        action: "deploy.grant.revoke",
        subject: `project:${scope}/${grant.project}`,
        after: { grantId: grant.id },
      });
      return { grant: grantView({ ...grant, revoked_at: at }, now()) };
    });
  });

  typed.get("/v1/deploy/review-policy", route(reviewSchemas.policy), async (req) => {
    const caller = who.caller(req);
    const scope = policyScope(caller, req.query.tenant);
    return { scope, risky: await reviews.policy(scope) };
  });

  typed.put("/v1/deploy/review-policy", route(reviewSchemas.setPolicy), async (req) => {
    const caller = who.caller(req);
    const scope = policyScope(caller, req.query.tenant);
    const kinds: ReasonKind[] = [...new Set(req.body.risky)].sort();
    const before = await reviews.policy(scope);
    await reviews.store.transaction(async (trx) => {
      await reviews.setPolicy(trx, scope, kinds, now());
      await audit.append(trx, {
        actor: caller.actor,
        action: "deploy.review_policy.set",
        subject: `tenant:${scope}`,
        before: { risky: before },
        after: { risky: kinds },
      });
    });
    return { scope, risky: kinds };
  });
}

/** A tenant sets its own policy; the node key may name any tenant (`?tenant=`). */
function policyScope(caller: Caller, tenant: string | undefined): string {
  if (tenant === undefined || tenant === "") return scopeOf(caller);
  if (caller.tenant !== undefined && caller.tenant !== tenant.toLowerCase()) {
    throw new TabbifyError("FORBIDDEN", "a tenant token sets only its own tenant's review policy");
  }
  return tenant.toLowerCase();
}

function assertPending(plan: ReturnType<typeof planView>): void {
  if (plan.status === "expired")
    throw new TabbifyError("PLAN_EXPIRED", `plan ${plan.id} expired at ${plan.expiresAt}`);
  if (plan.status !== "pending") {
    throw new TabbifyError("PLAN_CONFLICT", `plan ${plan.id} is already ${plan.status}`);
  }
}
