import type { Static } from "@sinclair/typebox";
import { fileBody } from "../core/file-body.js";
import type { NodeClient } from "./client.js";
import type { upgradeSchemas } from "./schemas/operations.js";
import type { Topology } from "./schemas/roster.js";

/**
 * Typed calls for the node's platform routes (platform-upgrade-routes.ts) and its topology, over a
 * NodeClient: what `tabbify upgrade` and the upgrader use. Types come from the route schemas.
 */

/** `POST /api/v1/platform/upgrade`'s 202. */
export type UpgradeAccepted = Static<(typeof upgradeSchemas)["start"]["response"][202]>;
/** `GET /api/v1/platform/upgrades/:id`. */
export type UpgradeRecordAnswer = Static<(typeof upgradeSchemas)["status"]["response"][200]>;
type RollbackBody = Static<(typeof upgradeSchemas)["start"]["body"]["content"]["application/json"]["schema"]>;
/** `GET /v1/topology` (the node key). */
export type TopologyAnswer = Static<typeof Topology>;

/** Uploads a release tarball, streamed from disk, and starts the upgrade to it. */
export async function startPlatformUpgrade(
  node: NodeClient,
  tarball: string,
  opts: { restartRunners: boolean },
): Promise<UpgradeAccepted> {
  const query = opts.restartRunners ? "?restart_runners=1" : "";
  return node.upload("POST", `/api/v1/platform/upgrade${query}`, await fileBody(tarball));
}

/** Starts the upgrade back to the release before the current one. */
export function startPlatformRollback(
  node: NodeClient,
  opts: { restartRunners: boolean },
): Promise<UpgradeAccepted> {
  const body: RollbackBody = { rollback: true, ...(opts.restartRunners ? { restart_runners: true } : {}) };
  return node.request("POST", "/api/v1/platform/upgrade", body);
}

export function platformUpgrade(node: NodeClient, id: string): Promise<UpgradeRecordAnswer> {
  return node.request("GET", `/api/v1/platform/upgrades/${encodeURIComponent(id)}`);
}

export function topology(node: NodeClient): Promise<TopologyAnswer> {
  return node.request("GET", "/v1/topology");
}
