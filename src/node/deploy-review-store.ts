import { REASON_KINDS, type ReasonKind } from "../contract/reasons.js";
import type { Contract } from "../contract/types.js";
import { TabbifyError } from "../core/errors.js";
import type { Store, StoreTransaction } from "../store/index.js";
import type {
  DeployGrantsTable,
  DeployPlansTable,
  DeploySessionsTable,
} from "../store/tables/deploy-review.js";

/**
 * The node's records of handler deploys: review plans, grants, review policies, sessions and
 * proof rows (migration 700). Everything is keyed by scope (the tenant, or `admin` for the node
 * key) so no query can reach another tenant's rows.
 */

export interface PlanView {
  id: string;
  projectName: string;
  region: string;
  status: "pending" | "approved" | "rejected" | "used" | "expired";
  mode?: "once" | "grant";
  grantId?: string;
  baselineSha: string | null;
  proposedSha: string;
  diff: { reasons: string[] };
  grantCoverage: { coveredReasons: string[]; uncoveredReasons: string[] };
  createdAt: string;
  expiresAt: string;
  decidedAt?: string;
  decidedBy?: string;
  /** The two contracts compared, as the deploy sent them (absent on plans older than migration 940). */
  baselineContract?: Contract | null;
  proposedContract?: Contract;
}

export interface GrantView {
  id: string;
  projectName: string;
  sourcePlanId: string;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string;
  status: "active" | "revoked" | "expired";
  reasons: string[];
}

const json = (s: string): string[] => JSON.parse(s) as string[];

export function planView(row: DeployPlansTable, now: Date): PlanView {
  const reasons = json(row.reasons);
  const covered = new Set(json(row.covered));
  const expired = row.status === "pending" && Date.parse(row.expires_at) <= now.getTime();
  const view: PlanView = {
    id: row.id,
    projectName: row.project,
    region: row.region,
    status: expired ? "expired" : (row.status as PlanView["status"]),
    baselineSha: row.baseline_sha,
    proposedSha: row.proposed_sha,
    diff: { reasons },
    grantCoverage: {
      coveredReasons: reasons.filter((r) => covered.has(r)),
      uncoveredReasons: reasons.filter((r) => !covered.has(r)),
    },
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
  if (row.mode) view.mode = row.mode as "once" | "grant";
  if (row.grant_id) view.grantId = row.grant_id;
  if (row.decided_at) view.decidedAt = row.decided_at;
  if (row.decided_by) view.decidedBy = row.decided_by;
  if (row.proposed_contract) {
    view.proposedContract = JSON.parse(row.proposed_contract) as Contract;
    view.baselineContract = row.baseline_contract ? (JSON.parse(row.baseline_contract) as Contract) : null;
  }
  return view;
}

export function grantView(row: DeployGrantsTable, now: Date): GrantView {
  const expired = row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime();
  const view: GrantView = {
    id: row.id,
    projectName: row.project,
    sourcePlanId: row.source_plan_id,
    createdAt: row.created_at,
    status: row.revoked_at ? "revoked" : expired ? "expired" : "active",
    reasons: json(row.reasons),
  };
  if (row.expires_at) view.expiresAt = row.expires_at;
  if (row.revoked_at) view.revokedAt = row.revoked_at;
  return view;
}

export class DeployReviewStore {
  constructor(readonly store: Store) {}

  async policy(scope: string): Promise<ReasonKind[]> {
    const row = await this.store.db
      .selectFrom("deploy_review_policies")
      .select("risky")
      .where("scope", "=", scope)
      .executeTakeFirst();
    return row ? (json(row.risky) as ReasonKind[]) : [...REASON_KINDS];
  }

  async setPolicy(trx: StoreTransaction, scope: string, risky: ReasonKind[], now: Date): Promise<void> {
    const values = { scope, risky: JSON.stringify(risky), updated_at: now.toISOString() };
    await trx
      .insertInto("deploy_review_policies")
      .values(values)
      .onConflict((oc) =>
        oc.column("scope").doUpdateSet({ risky: values.risky, updated_at: values.updated_at }),
      )
      .execute();
  }

  /** The contract of the project's last deploy that came up: what a new one is compared with. */
  async baseline(scope: string, project: string): Promise<{ sha: string; contract: Contract } | undefined> {
    const row = await this.store.db
      .selectFrom("deploy_sessions")
      .select(["contract_sha", "contract"])
      .where("scope", "=", scope)
      .where("project", "=", project)
      .where("state", "=", "ready")
      .orderBy("created_at", "desc")
      .limit(1)
      .executeTakeFirst();
    return row ? { sha: row.contract_sha, contract: JSON.parse(row.contract) as Contract } : undefined;
  }

  /** The project's last session of any state (for the region and app of a re-deploy). */
  async lastSession(scope: string, project: string): Promise<DeploySessionsTable | undefined> {
    return this.store.db
      .selectFrom("deploy_sessions")
      .selectAll()
      .where("scope", "=", scope)
      .where("project", "=", project)
      .orderBy("created_at", "desc")
      .limit(1)
      .executeTakeFirst();
  }

  /** Inside a transaction pass it: on SQLite a query outside it would wait for it forever. */
  async grants(
    scope: string,
    project: string | undefined,
    trx?: StoreTransaction,
  ): Promise<DeployGrantsTable[]> {
    let q = (trx ?? this.store.db).selectFrom("deploy_grants").selectAll().where("scope", "=", scope);
    if (project !== undefined) q = q.where("project", "=", project);
    return q.orderBy("created_at", "asc").execute();
  }

  async plan(trx: StoreTransaction | undefined, scope: string, id: string): Promise<DeployPlansTable> {
    const row = await (trx ?? this.store.db)
      .selectFrom("deploy_plans")
      .selectAll()
      .where("id", "=", id)
      .where("scope", "=", scope)
      .executeTakeFirst();
    if (!row) throw new TabbifyError("PLAN_NOT_FOUND", `no deploy plan ${id.slice(0, 64)}`);
    return row;
  }

  async grant(trx: StoreTransaction | undefined, scope: string, id: string): Promise<DeployGrantsTable> {
    const row = await (trx ?? this.store.db)
      .selectFrom("deploy_grants")
      .selectAll()
      .where("id", "=", id)
      .where("scope", "=", scope)
      .executeTakeFirst();
    if (!row) throw new TabbifyError("GRANT_NOT_FOUND", `no grant ${id.slice(0, 64)}`);
    return row;
  }

  async session(id: string): Promise<DeploySessionsTable | undefined> {
    return this.store.db.selectFrom("deploy_sessions").selectAll().where("id", "=", id).executeTakeFirst();
  }

  async setSessionState(id: string, state: string, detail: string | null, digest?: string): Promise<void> {
    await this.store.db
      .updateTable("deploy_sessions")
      .set({ state, detail, ...(digest ? { digest } : {}) })
      .where("id", "=", id)
      .execute();
  }

  async proofs(scope: string, project: string): Promise<unknown[]> {
    const rows = await this.store.db
      .selectFrom("proof_rows")
      .select("row")
      .where("scope", "=", scope)
      .where("project", "=", project)
      .orderBy("ts", "asc")
      .limit(1000)
      .execute();
    return rows.map((r) => JSON.parse(r.row) as unknown);
  }
}
