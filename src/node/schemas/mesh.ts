import { Type } from "@sinclair/typebox";
import { AnyObject, errorResponses, nodeKey } from "./common.js";

/**
 * Schemas of `/v1/mesh/*`. Register and heartbeat take two bodies on one path (a roster peer
 * record, or a WireGuard peer carrying `wg_public_key`). The caller is authenticated inside the
 * handler (which credential counts depends on the body), so bodies are checked there, by the
 * coordinators' parsers, after authentication: a validating body schema would answer a stranger's
 * malformed body before asking who it is.
 */

const meshAuth = [...nodeKey, { joinToken: [] }];
const tag = ["mesh"];

const bodies =
  "Body: a roster PeerRecord {kind, name, address, ula, version, tags, app_uuid?, parent?}, or a WireGuard peer {wg_public_key, …} (src/mesh/wire.ts).";

export const registerSchema = {
  summary: "Put a peer on the roster or the WireGuard mesh",
  tags: tag,
  security: meshAuth,
  description: bodies,
  response: { 200: AnyObject, ...errorResponses },
};

export const heartbeatSchema = {
  summary: "Refresh a peer (the full record again)",
  tags: tag,
  security: meshAuth,
  description: bodies,
  response: { 200: AnyObject, ...errorResponses },
};

export const deregisterSchema = {
  summary: "Take a peer off the roster or the mesh",
  tags: tag,
  security: meshAuth,
  description: 'Body: {"peer_id": "<id>"}.',
  response: { 200: Type.Object({}), ...errorResponses },
};

export const peersSchema = {
  summary: "Mesh peers (with the node key also the roster's supervisors and runners)",
  tags: tag,
  security: meshAuth,
  response: { 200: Type.Object({ peers: Type.Array(AnyObject) }), ...errorResponses },
};

export const meshTopologySchema = {
  summary: "The WireGuard mesh: machines and the paths between them",
  tags: tag,
  security: meshAuth,
  response: { 200: AnyObject, ...errorResponses },
};

export const peersStreamSchema = {
  summary: "Mesh peers as text/event-stream: a snapshot, then join, update and leave events",
  tags: tag,
  security: meshAuth,
  produces: ["text/event-stream"],
  response: { 200: Type.String({ description: "text/event-stream" }), ...errorResponses },
};
