/**
 * The roster protocol between peers (supervisors, runners) and the coordinator hosted by the
 * node. Peers register once, then heartbeat the full record; a heartbeat answered 404 means the
 * coordinator forgot the peer (it restarted): register again.
 *
 *   POST /v1/mesh/register   body PeerRecord → 200 RegisterReply
 *   POST /v1/mesh/heartbeat  body PeerRecord → 200 RegisterReply | 404 {error}
 *   POST /v1/mesh/deregister body {peer_id}  → 200 {}
 *   GET  /v1/mesh/peers                     → 200 {peers: PeerInfo[]}
 * All with `Authorization: Bearer <TABBIFY_NODE_KEY>`.
 *
 * A peer absent for longer than the coordinator's heartbeat timeout is dropped; runners whose
 * parent supervisor is absent are listed as orphaned in /v1/topology.
 */
export type PeerKind = "supervisor" | "runner";

export interface PeerRecord {
  kind: PeerKind;
  /** Supervisor: display name (`--name`). Runner: its app uuid. Unique per kind. */
  name: string;
  /** Base URL of the peer's HTTP API (supervisor) or the app's bound address (runner). */
  address: string;
  /** The peer's mesh address: supervisor host ULA/loopback, runner app address. */
  ula: string;
  version: string;
  /** Supervisor capability tags in frozen order: supervisor, process, wasm, docker, builder, firecracker. */
  tags: string[];
  /** Runner only. */
  app_uuid?: string;
  /** Runner only: the supervisor's name. */
  parent?: string;
}

export interface PeerInfo extends PeerRecord {
  peer_id: string;
  joined_at: string;
  last_seen: string;
}

export interface RegisterReply {
  peer_id: string;
  heartbeat_interval_secs: number;
}
