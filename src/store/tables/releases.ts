/** Releases and the deploy lock. JSON is text, timestamps ISO 8601 text, as elsewhere. */

export interface ReleasesTable {
  /** uuid v7: newer releases sort after older ones. */
  id: string;
  app_uuid: string;
  /** `sha256:…`: the OCI manifest digest, or a pushed artifact's content digest. Unique per app. */
  digest: string;
  /** JSON: `{repo_url, commit_sha}` or `{artifact_version}`. */
  source: string;
  /** JSON: the release manifest. */
  manifest: string;
  created_at: string;
  created_by: string;
}

/** One row each time an environment of an app starts running a release; the newest is current. */
export interface ReleaseRunsTable {
  app_uuid: string;
  environment: string;
  release_id: string;
  started_at: string;
  deploy_id: string | null;
}

export interface DeployLocksTable {
  app_uuid: string;
  environment: string;
  /** The deploy (or rollout) holding the lock. */
  holder: string;
  acquired_at: string;
  /** A holder that died leaves the lock to whoever asks after this. */
  expires_at: string;
  /** The deploy record of the rollout holding it. */
  deploy_id: string | null;
}

/** Rollouts waiting for a lock; the oldest `queued_at` (then `deploy_id`) goes next. */
export interface DeployQueueTable {
  app_uuid: string;
  environment: string;
  deploy_id: string;
  queued_at: string;
}

export interface ReleaseTables {
  releases: ReleasesTable;
  release_runs: ReleaseRunsTable;
  deploy_locks: DeployLocksTable;
  deploy_queue: DeployQueueTable;
}
