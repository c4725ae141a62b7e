/**
 * The WireGuard mesh's wire contract (seed MESH http/api/dto.rs), served by the node next to the
 * roster on the same paths: a body carrying `wg_public_key` is a mesh join.
 *
 *   POST /v1/mesh/register    MeshRegisterRequest → 200 MeshRegisterResponse | 403 | 409
 *   POST /v1/mesh/heartbeat   MeshHeartbeatRequest → 200 MeshRegisterResponse | 404 (register again)
 *   POST /v1/mesh/deregister  {peer_id} → 200 {}
 *   GET  /v1/mesh/peers       → {peers: MeshPeerInfo[]}
 *   GET  /v1/mesh/topology    → {machines, edges}
 *   GET  /v1/mesh/peers/stream  SSE: `snapshot` {peers}, then `join` | `update` | `leave` {peer}
 * Bearer: a join token (`tabbify mesh token`) or the node key.
 */
export interface MeshPeerInfo {
  peer_id: string;
  wg_public_key: string;
  ula: string;
  /** `[ip]:port` where the peer's WireGuard listens, as the coordinator saw it. */
  listen_endpoint: string | null;
  display_name: string;
  network: string;
  tags: string[];
  hosted_app_ulas: string[];
  joined_at_micros: number;
  kind: string;
  parent?: string;
  app_uuid?: string;
  software_version?: string;
  mesh_version?: string;
  relay_only: boolean;
  connectivity?: string;
  connectivity_age_ms?: number;
}

export interface MeshRegisterRequest {
  wg_public_key: string;
  wg_listen_port: number;
  /** Explicit `[ip]:port`; else the request's source address with `wg_listen_port`. */
  listen_endpoint?: string;
  requested_ula?: string;
  display_name: string;
  /** Must equal the token's network when given. */
  network?: string;
  tags?: string[];
  hosted_app_ulas?: string[];
  kind?: string;
  software_version?: string;
  mesh_version?: string;
}

export interface MeshRegisterResponse {
  peer_id: string;
  ula: string;
  /**
   * The peers this caller may see. A heartbeat that sent the current `peers_version` gets none
   * (the field is absent): it already has them, and the peers stream carries every change.
   */
  peers?: MeshPeerInfo[];
  /** Bumped on every join, update and leave. */
  peers_version: number;
  observed_ip?: string;
  observed_endpoint?: string;
  heartbeat_interval_secs: number;
}

export interface MeshPeerPath {
  peer_id: string;
  /** e.g. `direct`, `relay`, `down`. */
  path: string;
  rtt_ms?: number;
}

export interface MeshHeartbeatRequest {
  peer_id: string;
  wg_public_key: string;
  hosted_app_ulas?: string[];
  peer_paths?: MeshPeerPath[];
  dataplane_healthy?: boolean;
  /** The `peers_version` of the last peer list this peer applied. */
  peers_version?: number;
}

export interface MeshTopology {
  machines: {
    peer_id: string;
    display_name: string;
    ula: string;
    network: string;
    tags: string[];
    kind: string;
    hosted_app_ulas: string[];
    dataplane_healthy: boolean;
    last_seen_ms_ago: number;
  }[];
  edges: { from: string; to: string; path: string; rtt_ms?: number }[];
}

export type MeshEvent = { type: "join" | "update" | "leave"; peer: MeshPeerInfo };
