import { Type } from "@sinclair/typebox";
import { errorResponses, NullableString, nodeKey, open } from "./common.js";

/** Schemas of the node's roster views: `/health`, `/v1/topology`, `/v1/supervisors`, `/v1/apps`. */

const EdgeStatus = open({ running: Type.Boolean() });

export const healthSchema = {
  summary: "Liveness and version (unauthenticated)",
  tags: ["roster"],
  response: {
    "2xx": Type.Object({
      status: Type.String({ description: "ok, or degraded while the nginx edge is down" }),
      tabbify_version: Type.String({ description: "the Tabbify release this node runs" }),
      version: Type.String({ description: "the same as tabbify_version (older name)" }),
      data_plane: Type.Union([Type.Literal("node"), EdgeStatus]),
    }),
  },
};

const TopologyRunner = Type.Object({
  app_uuid: Type.String(),
  app_ula: Type.String(),
  address: Type.String(),
  last_seen: Type.String(),
  name: NullableString,
});

export const Topology = open({
  supervisors: Type.Array(
    open({
      ula: Type.String(),
      display_name: Type.String(),
      address: Type.String(),
      tags: Type.Array(Type.String()),
      version: Type.String(),
      last_seen: Type.String(),
      runners: Type.Array(TopologyRunner),
    }),
  ),
  orphaned: Type.Array(
    open({
      app_uuid: Type.String(),
      app_ula: Type.String(),
      address: Type.String(),
      last_seen: Type.String(),
      name: NullableString,
      parent: NullableString,
    }),
  ),
  down: Type.Array(
    open({
      ula: Type.String(),
      display_name: Type.String(),
      address: Type.String(),
      tags: Type.Array(Type.String()),
      version: Type.String(),
      last_seen: Type.String(),
      down_since: Type.String(),
      runners: Type.Array(TopologyRunner),
    }),
    { description: "Supervisors lost without deregistering, with their runners: their apps answer 502" },
  ),
});

export const topologySchema = {
  summary:
    "Supervisors and the runners under each; runners whose parent is gone are orphaned; lost hosts are down",
  tags: ["roster"],
  security: nodeKey,
  response: { 200: Topology, ...errorResponses },
};

export const SupervisorList = open({
  supervisors: Type.Array(
    open({
      peer_id: Type.String(),
      display_name: Type.String(),
      ula: Type.String(),
      address: Type.String(),
      tags: Type.Array(Type.String()),
      version: Type.String(),
      joined_at: Type.String(),
      last_seen: Type.String(),
      runner_count: Type.Integer(),
      tabbify_version: Type.String({ description: "the Tabbify release the supervisor runs" }),
    }),
  ),
});

export const supervisorsSchema = {
  summary: "The supervisors on the roster",
  tags: ["roster"],
  security: nodeKey,
  response: { 200: SupervisorList, ...errorResponses },
};

export const RosterApp = open({
  uuid: Type.String(),
  name: NullableString,
  app_ula: Type.String(),
  address: Type.String(),
  supervisor: NullableString,
  orphaned: Type.Boolean(),
  tabbify_version: Type.String({ description: "the Tabbify release the runner runs (not the app's)" }),
  version: Type.String({ description: "the same as tabbify_version (older name)" }),
  last_seen: Type.String(),
  proxy_path: Type.String(),
});

export const RosterAppList = open({ apps: Type.Array(RosterApp) });

export const rosterAppsSchema = {
  summary: "Every app runner on the roster, with its registry name and proxy path",
  tags: ["roster"],
  security: nodeKey,
  response: { 200: RosterAppList, ...errorResponses },
};
