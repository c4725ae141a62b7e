import { type Static, type TSchema, type TUnsafe, Type } from "@sinclair/typebox";
import { AnyObject, errorResponses, nodeKey, open } from "./common.js";

/**
 * Schemas of `/v1/mesh/*`. Register and heartbeat take two bodies on one path: a roster peer
 * record, or a WireGuard peer, told apart by `wg_public_key` (JSON Schema's if/then/else, so a
 * failure is reported against the body that was meant). The caller is authenticated in an
 * `onRequest` hook, before the body is read. What a schema cannot say stays with the
 * coordinators (src/mesh/coordinator.ts, mesh-coordinator.ts): a runner's name against its
 * app_uuid, a key that decodes to 32 bytes, app addresses inside fd5a:1f02::/32.
 */

const meshAuth = [...nodeKey, { joinToken: [] }];
const tag = ["mesh"];

const text = (max: number) =>
  Type.String({
    maxLength: max,
    "x-message": `field "{field}" must be a string of at most ${max} characters`,
  });
const nullable = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));
const list = (name: string, max: number) =>
  Type.Array(Type.String({ maxLength: 64 }), {
    maxItems: max,
    "x-message": `${name} must be an array of strings`,
  });

/** A roster peer: a supervisor, or a runner (an app's process) under one. */
export const PeerRecordBody = Type.Object(
  {
    kind: Type.Union([Type.Literal("supervisor"), Type.Literal("runner")], {
      "x-message": "peer kind must be one of supervisor, runner",
    }),
    name: nullable(text(512)),
    address: text(512),
    ula: text(512),
    version: text(512),
    tags: Type.Optional(list("tags", 32)),
    app_uuid: nullable(text(512)),
    parent: nullable(text(512)),
  },
  { additionalProperties: true, "x-message": "peer record must be a JSON object" },
);

const WgKey = Type.String({
  pattern: "^[A-Za-z0-9+/]{43}=$",
  "x-message": "wg_public_key must be a base64 WireGuard public key (32 bytes)",
});
const AppUlas = Type.Array(Type.String({ maxLength: 64 }), {
  maxItems: 4096,
  "x-message": "hosted_app_ulas must be an array of at most 4096 addresses",
});

export const MeshRegisterBody = Type.Object(
  {
    wg_public_key: WgKey,
    wg_listen_port: Type.Integer({
      minimum: 1,
      maximum: 65535,
      "x-message": "wg_listen_port must be a port number",
    }),
    display_name: Type.String({
      minLength: 1,
      maxLength: 128,
      "x-message": 'field "display_name" is required',
    }),
    listen_endpoint: nullable(
      Type.String({
        maxLength: 64,
        pattern: "^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+):\\d{1,5}$",
        "x-message": "listen_endpoint must be IP:PORT or [IPv6]:PORT",
      }),
    ),
    requested_ula: nullable(text(64)),
    network: nullable(text(64)),
    tags: Type.Optional(list("tags", 32)),
    hosted_app_ulas: nullable(AppUlas),
    kind: nullable(text(32)),
    software_version: nullable(text(64)),
    mesh_version: nullable(text(64)),
  },
  { additionalProperties: true, "x-message": "a mesh register request must be a JSON object" },
);

export const MeshHeartbeatBody = Type.Object(
  {
    peer_id: Type.String({ minLength: 1, maxLength: 64, "x-message": 'field "peer_id" is required' }),
    wg_public_key: WgKey,
    hosted_app_ulas: nullable(AppUlas),
    peer_paths: Type.Optional(
      Type.Array(
        Type.Object(
          {
            peer_id: Type.String({ minLength: 1, maxLength: 64 }),
            path: Type.String({ minLength: 1, maxLength: 32 }),
            rtt_ms: Type.Optional(Type.Number()),
          },
          { additionalProperties: true },
        ),
        { maxItems: 4096, "x-message": "peer_paths must be an array of {peer_id, path, rtt_ms?}" },
      ),
    ),
    dataplane_healthy: Type.Optional(Type.Boolean()),
    peers_version: Type.Optional(Type.Integer()),
  },
  { additionalProperties: true, "x-message": "a mesh heartbeat must be a JSON object" },
);

/**
 * A schema whose static type both TypeBox lines read: @sinclair/typebox's (`static`) and the
 * `typebox` 1.x the fastify type provider infers handler input with (`~unsafe`).
 */
type Unsafe<T> = TUnsafe<T> & { "~unsafe": T };

/** A WireGuard peer's body when it carries `wg_public_key`, else a roster peer record. */
function eitherBody<W extends TSchema, R extends TSchema>(
  wireguard: W,
  roster: R,
): Unsafe<Static<W> | Static<R>> {
  return Type.Unsafe<Static<W> | Static<R>>({
    type: "object",
    if: { type: "object", required: ["wg_public_key"] },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then/else, not a thenable
    then: wireguard,
    else: roster,
    "x-message": "the body must be a JSON object",
  }) as Unsafe<Static<W> | Static<R>>;
}

export const RegisterBody = eitherBody(MeshRegisterBody, PeerRecordBody);
export const HeartbeatBody = eitherBody(MeshHeartbeatBody, PeerRecordBody);

const deregisterShape = 'deregister needs {"peer_id": "<id>"}';
export const DeregisterBody = Type.Object(
  {
    peer_id: Type.String({
      minLength: 1,
      maxLength: 200,
      "x-message": deregisterShape,
      "x-required": deregisterShape,
    }),
  },
  { additionalProperties: true, "x-message": deregisterShape },
);

/** What the roster answers a register or heartbeat. */
export const RosterRegisterReply = open({ peer_id: Type.String(), heartbeat_interval_secs: Type.Number() });

/** One WireGuard mesh peer as the coordinator hands it out. */
export const MeshPeer = open({
  peer_id: Type.String(),
  wg_public_key: Type.String(),
  ula: Type.String(),
  listen_endpoint: Type.Union([Type.String(), Type.Null()]),
  display_name: Type.String(),
  network: Type.String(),
  tags: Type.Array(Type.String()),
  hosted_app_ulas: Type.Array(Type.String()),
  joined_at_micros: Type.Number(),
  kind: Type.String(),
  parent: Type.Optional(Type.String()),
  app_uuid: Type.Optional(Type.String()),
  software_version: Type.Optional(Type.String()),
  mesh_version: Type.Optional(Type.String()),
  relay_only: Type.Boolean(),
  connectivity: Type.Optional(Type.String()),
  connectivity_age_ms: Type.Optional(Type.Number()),
});

/** What the WireGuard mesh answers a register or heartbeat (`peers` only when they changed). */
export const MeshRegisterReply = open({
  peer_id: Type.String(),
  ula: Type.String(),
  peers: Type.Optional(Type.Array(MeshPeer)),
  peers_version: Type.Integer(),
  observed_ip: Type.Optional(Type.String()),
  observed_endpoint: Type.Optional(Type.String()),
  heartbeat_interval_secs: Type.Number(),
});

const RegisterReply = Type.Union([MeshRegisterReply, RosterRegisterReply]);

/** The mesh routes' request bodies by path, for the typed clients (src/mesh/client.ts, joiner.ts). */
export interface MeshRequests {
  "/v1/mesh/register": Static<typeof RegisterBody>;
  "/v1/mesh/heartbeat": Static<typeof HeartbeatBody>;
  "/v1/mesh/deregister": Static<typeof DeregisterBody>;
}

export const registerSchema = {
  summary: "Put a peer on the roster or the WireGuard mesh",
  tags: tag,
  security: meshAuth,
  "x-error-code": "PEER_INVALID",
  body: RegisterBody,
  response: { 200: RegisterReply, ...errorResponses },
};

export const heartbeatSchema = {
  summary: "Refresh a peer (the full record again)",
  tags: tag,
  security: meshAuth,
  "x-error-code": "PEER_INVALID",
  body: HeartbeatBody,
  response: { 200: RegisterReply, ...errorResponses },
};

export const deregisterSchema = {
  summary: "Take a peer off the roster or the mesh",
  tags: tag,
  security: meshAuth,
  body: DeregisterBody,
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
