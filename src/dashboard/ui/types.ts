/**
 * The shapes the UI reads from the node's API (src/node/schemas/ describes them in full). Only the
 * fields the pages use are listed.
 */

export interface RegistryApp {
  uuid: string;
  name: string;
  tenant: string;
  environments: string[];
  /** Env var NAMES only; values never reach the browser. */
  env: string[];
  [field: string]: unknown;
}

export interface EnvironmentRun {
  release_id: string;
  digest: string;
  source: { repo_url?: string; commit_sha?: string; artifact_version?: string };
  started_at: string;
  deploy_id: string | null;
}

export interface Environments {
  app: string;
  uuid: string;
  environments: { name: string; current: EnvironmentRun | null; runs: EnvironmentRun[] }[];
}

export interface DeploySummary {
  id: string;
  status: string;
  trigger: string;
  ref: string | null;
  created_at: string;
  finished_at: string | null;
  digest: string | null;
  error: { code: string; message: string; step: string } | null;
  targets: { supervisor: string; success: boolean; error?: string }[];
}

export interface Deploys {
  app: string;
  uuid: string;
  deploys: DeploySummary[];
}

export interface SupervisorView {
  state?: string;
  restart_status?: string;
  restart_count?: number;
  restarts?: number | null;
  app_health?: string | null;
  app_health_reason?: string;
  error?: string;
}

export interface RuntimeStatus {
  app: string;
  uuid: string;
  targets: {
    supervisor: string;
    on_roster: boolean;
    runner_on_roster: boolean;
    supervisor_says?: SupervisorView;
  }[];
}

export interface TargetResult {
  supervisor: string;
  success: boolean;
  error?: string;
  log_tail?: string[];
  [field: string]: unknown;
}

export interface DeployStatus {
  id: string;
  state: string;
  done: boolean;
  success: boolean;
  created_at: string;
  finished_at?: string;
  trigger: string;
  ref: string;
  step?: string;
  app_uuid?: string;
  digest?: string;
  error?: { code: string; message: string; step: string };
  results: TargetResult[];
}

export interface DeployEvent {
  seq: number;
  ts: string;
  step: string;
  type: string;
  message?: string;
  data?: Record<string, unknown>;
}
