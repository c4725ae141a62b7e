import type { NodeClient } from "./client.js";

/**
 * Typed calls for the node's release routes (releases-node.ts), over a NodeClient: what tcli's
 * `releases`, `promote`, `rollback` and `push` use.
 */

export interface NodeRelease {
  id: string;
  app: string;
  digest: string;
  source: { repo_url: string; commit_sha: string } | { artifact_version: string };
  manifest: Record<string, unknown>;
  created_at: string;
  created_by: string;
  /** Environments whose current release this is (listings only). */
  environments?: string[];
}

export interface ReleaseListing {
  app: string;
  uuid: string;
  releases: Array<NodeRelease & { environments: string[] }>;
}

export interface RolloutTarget {
  supervisor: string;
  runtime: string;
  success: boolean;
  digest?: string;
  error?: string;
}

/** What rollback and promote answer once the rollout ended. */
export interface RolloutResult {
  app: string;
  environment: string;
  /** The deploy record of the rollout: `GET /v1/deploy/<id>/status` and `/events`. */
  deploy_id: string;
  release: NodeRelease;
  /** Rollback: the release it replaced; promote: the environment it came from. */
  from: string | null;
  uuid?: string;
  targets: RolloutTarget[];
  duration_ms: number;
  /** How long it waited for another rollout of the same environment first. */
  queued_ms: number;
}

export interface PushedVersion {
  version: string;
  manifest_toml: string;
  files: Array<{ path: string; digest: string }>;
  /** For an app the node has not seen yet. */
  name?: string;
}

const appPath = (ref: string) => `/api/v1/apps/${encodeURIComponent(ref)}`;
const waitQuery = (wait: boolean) => (wait ? "" : "?wait=false");

export function listReleases(client: NodeClient, ref: string): Promise<ReleaseListing> {
  return client.request("GET", `${appPath(ref)}/releases`);
}

export function registerRelease(client: NodeClient, ref: string, body: PushedVersion): Promise<NodeRelease> {
  // The node rolls the version to the app's first environment before answering.
  return client.request("POST", `${appPath(ref)}/releases`, body, { timeout: false });
}

export function promote(
  client: NodeClient,
  ref: string,
  body: { from: string; to: string; release?: string },
  wait: boolean,
): Promise<RolloutResult> {
  return client.request("POST", `${appPath(ref)}/promote${waitQuery(wait)}`, body, { timeout: false });
}

export function rollback(
  client: NodeClient,
  ref: string,
  body: { env?: string; to?: string; migrate?: boolean },
  wait: boolean,
): Promise<RolloutResult> {
  return client.request("POST", `${appPath(ref)}/rollback${waitQuery(wait)}`, body, { timeout: false });
}
