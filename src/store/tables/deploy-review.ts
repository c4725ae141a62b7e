/** Handler deploys with a contract (migration 700). Lists are JSON text; times ISO 8601. */

export interface DeployPlansTable {
  /** A random UUID: knowing one is not enough to act on it (every route checks the scope). */
  id: string;
  /** The tenant (lowercase) or `admin` for the node key. */
  scope: string;
  project: string;
  region: string;
  baseline_sha: string | null;
  proposed_sha: string;
  /** JSON string[]: every risky reason of the diff. */
  reasons: string;
  /** JSON string[]: those a live grant already covers. */
  covered: string;
  /** pending | approved | rejected | used */
  status: string;
  /** once | grant, once approved. */
  mode: string | null;
  grant_id: string | null;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  decided_by: string | null;
  /** Canonical JSON of the baseline contract (migration 940); null for a first deploy or an older plan. */
  baseline_contract: string | null;
  /** Canonical JSON of the proposed contract (migration 940); null for an older plan. */
  proposed_contract: string | null;
}

export interface DeployGrantsTable {
  id: string;
  scope: string;
  project: string;
  source_plan_id: string;
  /** JSON string[]. */
  reasons: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
}

export interface DeployReviewPoliciesTable {
  scope: string;
  /** JSON string[] of reason kinds that need review: env, egress, route, effect. */
  risky: string;
  updated_at: string;
}

export interface DeploySessionsTable {
  id: string;
  scope: string;
  project: string;
  region: string;
  app_uuid: string;
  contract_sha: string;
  /** The canonical contract JSON. */
  contract: string;
  plan_id: string | null;
  /** JSON string[]. */
  grant_ids: string;
  /** SHA-256 hex of the session's upload credential; the credential itself is never stored. */
  token_sha256: string;
  /** open | uploaded | starting | ready | failed */
  state: string;
  detail: string | null;
  /** sha256 of the uploaded bundle. */
  digest: string | null;
  created_at: string;
  expires_at: string;
}

export interface ProofRowsTable {
  session_id: string;
  scope: string;
  project: string;
  ts: number;
  /** The proof row as JSON (SEED-FACTS §6). */
  row: string;
}

export interface DeployReviewTables {
  deploy_plans: DeployPlansTable;
  deploy_grants: DeployGrantsTable;
  deploy_review_policies: DeployReviewPoliciesTable;
  deploy_sessions: DeploySessionsTable;
  proof_rows: ProofRowsTable;
}
