import { isIPv6 } from "node:net";
import { TabbifyError } from "../core/errors.js";
import type { MeshAddressBook } from "./address-book.js";
import { type JoinClaims, SELF_ADVERTISED_TAGS, validateNetwork, validateTags } from "./join-token.js";
import { isInfraUla, normalizeUla, ulaWords } from "./ula.js";
import type {
  MeshEvent,
  MeshHeartbeatRequest,
  MeshPeerInfo,
  MeshPeerPath,
  MeshRegisterRequest,
  MeshRegisterResponse,
  MeshTopology,
} from "./wire.js";

/** Who is asking: the node key (the operator, may do anything) or a join token's claims. */
export type MeshCaller = { via: "node-key" } | { via: "token"; claims: JoinClaims };

export interface MeshCoordinatorOptions {
  book: MeshAddressBook;
  /** A peer silent this long leaves, and its app routes with it. Default 60 s. */
  heartbeatTimeoutMs?: number;
  /** What replies tell joiners to beat at. Default 20 s, or a third of a shorter timeout. */
  heartbeatIntervalSecs?: number;
  now?: () => number;
}

interface Live {
  info: MeshPeerInfo;
  lastSeenMs: number;
  paths: MeshPeerPath[];
  healthy: boolean;
}

const MAX_APP_ULAS = 4096;
/** How long a stream may take to deliver an event before a heartbeat resends the whole list. */
const STREAM_GRACE_MS = 10_000;
const RECENT_VERSIONS = 4096;
const MAX_PATHS = 4096;

/**
 * The WireGuard mesh's coordinator: hands out sticky addresses (through the store-backed
 * {@link MeshAddressBook}), keeps the live peers in memory, and tells followers of the peers
 * stream who joined, changed or left. A silent peer is swept after the heartbeat timeout, which
 * withdraws its app routes from every follower.
 */
export class MeshCoordinator {
  readonly heartbeatTimeoutMs: number;
  readonly heartbeatIntervalSecs: number;
  private readonly book: MeshAddressBook;
  private readonly now: () => number;
  private readonly live = new Map<string, Live>();
  private readonly followers = new Set<(event: MeshEvent) => void>();
  private version = 0;
  /** When each of the last {@link RECENT_VERSIONS} versions was superseded. */
  private readonly supersededAt = new Map<number, number>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(opts: MeshCoordinatorOptions) {
    this.book = opts.book;
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 60_000;
    // Three beats fit in one timeout, so one lost heartbeat never drops a peer.
    this.heartbeatIntervalSecs =
      opts.heartbeatIntervalSecs ?? Math.min(20, Math.max(1, Math.floor(this.heartbeatTimeoutMs / 3000)));
    this.now = opts.now ?? Date.now;
    this.sweeper = setInterval(
      () => this.sweep(),
      Math.min(5000, Math.max(100, this.heartbeatTimeoutMs / 4)),
    );
    this.sweeper.unref();
  }

  close(): void {
    clearInterval(this.sweeper);
    this.followers.clear();
  }

  async register(body: unknown, caller: MeshCaller, observedIp?: string): Promise<MeshRegisterResponse> {
    const req = parseRegister(body);
    const network = networkFor(caller, req.network);
    const tags = tagsFor(caller, req.tags ?? []);
    const requested = req.requested_ula;
    const assignment = await this.book.allocate({
      wgPublicKey: req.wg_public_key,
      network,
      ...(requested !== undefined ? { requestedUla: requested } : {}),
      grantedUlas:
        caller.via === "node-key" && requested !== undefined ? [normalizeUla(requested)] : grants(caller),
      isLive: (peerId) => this.isLive(peerId),
    });
    const ip = observedIp?.replace(/^::ffff:/, "");
    const endpoint =
      req.listen_endpoint ?? (ip ? `${isIPv6(ip) ? `[${ip}]` : ip}:${req.wg_listen_port}` : null);
    const previous = this.live.get(assignment.peer_id);
    const info: MeshPeerInfo = {
      peer_id: assignment.peer_id,
      wg_public_key: req.wg_public_key,
      ula: assignment.ula,
      listen_endpoint: endpoint,
      display_name: req.display_name,
      network,
      tags,
      hosted_app_ulas: req.hosted_app_ulas ?? [],
      joined_at_micros: previous?.info.joined_at_micros ?? this.now() * 1000,
      kind: req.kind ?? "peer",
      relay_only: false,
      ...(req.software_version ? { software_version: req.software_version } : {}),
      ...(req.mesh_version ? { mesh_version: req.mesh_version } : {}),
    };
    this.live.set(info.peer_id, {
      info,
      lastSeenMs: this.now(),
      paths: previous?.paths ?? [],
      healthy: true,
    });
    this.emit({ type: previous ? "update" : "join", peer: info });
    return {
      peer_id: info.peer_id,
      ula: info.ula,
      peers: this.peersVisibleTo(caller),
      peers_version: this.version,
      ...(ip ? { observed_ip: ip } : {}),
      ...(endpoint ? { observed_endpoint: endpoint } : {}),
      heartbeat_interval_secs: this.heartbeatIntervalSecs,
    };
  }

  /** Throws PEER_UNKNOWN (404) when the peer must register again. */
  heartbeat(body: unknown, caller: MeshCaller): MeshRegisterResponse {
    const req = parseHeartbeat(body);
    const entry = this.liveEntry(req.peer_id);
    if (!entry || entry.info.wg_public_key !== req.wg_public_key) {
      throw new TabbifyError("PEER_UNKNOWN", `mesh peer ${req.peer_id} is not registered; register again`);
    }
    assertSameNetwork(caller, entry.info.network);
    entry.lastSeenMs = this.now();
    entry.paths = req.peer_paths ?? entry.paths;
    entry.healthy = req.dataplane_healthy ?? true;
    if (req.hosted_app_ulas && !sameSet(req.hosted_app_ulas, entry.info.hosted_app_ulas)) {
      entry.info = { ...entry.info, hosted_app_ulas: req.hosted_app_ulas };
      this.emit({ type: "update", peer: entry.info });
    }
    return {
      peer_id: entry.info.peer_id,
      ula: entry.info.ula,
      // Resending every peer on every beat costs O(peers) per beat, O(peers²) per interval.
      ...(this.streamCarries(req.peers_version) ? {} : { peers: this.peersVisibleTo(caller) }),
      peers_version: this.version,
      heartbeat_interval_secs: this.heartbeatIntervalSecs,
    };
  }

  /** False when the peer was not live. */
  deregister(peerId: string, caller: MeshCaller): boolean {
    const entry = this.live.get(peerId);
    if (!entry) return false;
    assertSameNetwork(caller, entry.info.network);
    this.live.delete(peerId);
    this.emit({ type: "leave", peer: entry.info });
    return true;
  }

  knows(peerId: string): boolean {
    return this.live.has(peerId);
  }

  isLive(peerId: string): boolean {
    return this.liveEntry(peerId) !== undefined;
  }

  peers(): MeshPeerInfo[] {
    this.sweep();
    return [...this.live.values()].map((e) => e.info).sort((a, b) => a.ula.localeCompare(b.ula));
  }

  /**
   * What a caller may see: the node key sees every peer; a join token sees its own network's
   * peers and the platform's own (network "", where the node joins, and the fixed infra
   * addresses such as the registry's), which every host must route to. A token granting an infra
   * address sees every peer, as the node key does. Another tenant's hosts, names and app addresses stay hidden.
   */
  peersVisibleTo(caller: MeshCaller): MeshPeerInfo[] {
    return this.peers().filter((p) => visibleTo(caller, p));
  }

  /** The live peer hosting an app address, if any. */
  hostOf(appUla: string): MeshPeerInfo | undefined {
    const ula = normalizeUla(appUla);
    return this.peers().find((p) => p.hosted_app_ulas.includes(ula));
  }

  topology(caller: MeshCaller = { via: "node-key" }): MeshTopology {
    const now = this.now();
    const peers = this.peersVisibleTo(caller);
    const ids = new Set(peers.map((p) => p.peer_id));
    const entries = [...this.live.values()].filter((e) => ids.has(e.info.peer_id));
    return {
      machines: entries.map((e) => ({
        peer_id: e.info.peer_id,
        display_name: e.info.display_name,
        ula: e.info.ula,
        network: e.info.network,
        tags: e.info.tags,
        kind: e.info.kind,
        hosted_app_ulas: e.info.hosted_app_ulas,
        dataplane_healthy: e.healthy,
        last_seen_ms_ago: now - e.lastSeenMs,
      })),
      edges: entries.flatMap((e) =>
        e.paths
          .filter((p) => ids.has(p.peer_id))
          .map((p) => ({
            from: e.info.peer_id,
            to: p.peer_id,
            path: p.path,
            ...(p.rtt_ms !== undefined ? { rtt_ms: p.rtt_ms } : {}),
          })),
      ),
    };
  }

  /** Calls `listener` for every change until the returned function is called. */
  follow(listener: (event: MeshEvent) => void): () => void {
    this.followers.add(listener);
    return () => this.followers.delete(listener);
  }

  /** Bumped on every join, update and leave; sent with replies and stream events. */
  get peersVersion(): number {
    return this.version;
  }

  get followerCount(): number {
    return this.followers.size;
  }

  private liveEntry(peerId: string): Live | undefined {
    const entry = this.live.get(peerId);
    if (entry && this.now() - entry.lastSeenMs > this.heartbeatTimeoutMs) {
      this.live.delete(peerId);
      this.emit({ type: "leave", peer: entry.info });
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    for (const id of [...this.live.keys()]) this.liveEntry(id);
  }

  /**
   * Whether a joiner that has seen `version` is up to date, or will be from the peers stream: a
   * version superseded moments ago is what a follower has while the next event is on its way (a
   * busy coordinator bumps it several times a second). One superseded longer ago than a stream
   * takes means the joiner lost the stream, and gets the whole list.
   */
  private streamCarries(version: number | undefined): boolean {
    if (version === undefined || version > this.version) return false;
    if (version === this.version) return true;
    const at = this.supersededAt.get(version);
    return at !== undefined && this.now() - at <= STREAM_GRACE_MS;
  }

  private emit(event: MeshEvent): void {
    this.supersededAt.set(this.version, this.now());
    this.supersededAt.delete(this.version - RECENT_VERSIONS);
    this.version++;
    for (const f of this.followers) f(event);
  }
}

export function visibleTo(caller: MeshCaller, peer: MeshPeerInfo): boolean {
  return (
    caller.via === "node-key" ||
    // A token granting a fixed infra address (the registry's) is platform infrastructure that
    // every host reaches, so it must know every host.
    caller.claims.requested_ulas.length > 0 ||
    peer.network === caller.claims.network ||
    peer.network === "" ||
    isInfraUla(peer.ula)
  );
}

function grants(caller: MeshCaller): string[] {
  return caller.via === "token" ? caller.claims.requested_ulas : [];
}

function networkFor(caller: MeshCaller, asked: string | undefined): string {
  if (caller.via === "node-key") return validateNetwork(asked ?? "");
  if (asked !== undefined && asked !== caller.claims.network) {
    throw new TabbifyError(
      "MESH_FORBIDDEN",
      "the join token is for another network: a peer joins only its token's network",
    );
  }
  return caller.claims.network;
}

function tagsFor(caller: MeshCaller, asked: string[]): string[] {
  if (caller.via === "node-key") return validateTags(asked);
  const own = asked.filter((t) => SELF_ADVERTISED_TAGS.includes(t));
  return validateTags([...caller.claims.tags, ...own]);
}

function assertSameNetwork(caller: MeshCaller, network: string): void {
  if (caller.via === "token" && caller.claims.network !== network) {
    throw new TabbifyError("MESH_FORBIDDEN", "that peer is in another network");
  }
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function object(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TabbifyError("PEER_INVALID", `${what} must be a JSON object`);
  }
  return body as Record<string, unknown>;
}

function str(b: Record<string, unknown>, field: string, max = 256): string | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v.length > max) {
    throw new TabbifyError("PEER_INVALID", `field "${field}" must be a string of at most ${max} characters`);
  }
  return v;
}

function need(b: Record<string, unknown>, field: string, max?: number): string {
  const v = str(b, field, max);
  if (v === undefined || v === "") throw new TabbifyError("PEER_INVALID", `field "${field}" is required`);
  return v;
}

/** A WireGuard public key: 32 bytes, base64. */
function wgKey(b: Record<string, unknown>): string {
  const key = need(b, "wg_public_key", 64);
  if (!/^[A-Za-z0-9+/]{43}=$/.test(key) || Buffer.from(key, "base64").length !== 32) {
    throw new TabbifyError("PEER_INVALID", "wg_public_key must be a base64 WireGuard public key (32 bytes)");
  }
  return key;
}

/** App addresses a peer hosts: only the per-app block fd5a:1f02::/32, never a host or infra address. */
function appUlas(b: Record<string, unknown>): string[] | undefined {
  const v = b.hosted_app_ulas;
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length > MAX_APP_ULAS || v.some((u) => typeof u !== "string")) {
    throw new TabbifyError(
      "PEER_INVALID",
      `hosted_app_ulas must be an array of at most ${MAX_APP_ULAS} addresses`,
    );
  }
  return [
    ...new Set(
      (v as string[]).map((u) => {
        const ula = normalizeUla(u);
        const w = ulaWords(ula);
        if (w[0] !== 0xfd5a || w[1] !== 0x1f02) {
          throw new TabbifyError("PEER_INVALID", `hosted app address ${ula} is not in fd5a:1f02::/32`);
        }
        return ula;
      }),
    ),
  ];
}

function parseRegister(body: unknown): MeshRegisterRequest {
  const b = object(body, "a mesh register request");
  const port = b.wg_listen_port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TabbifyError("PEER_INVALID", "wg_listen_port must be a port number");
  }
  const tags = b.tags;
  if (
    tags !== undefined &&
    (!Array.isArray(tags) || tags.length > 32 || tags.some((t) => typeof t !== "string"))
  ) {
    throw new TabbifyError("PEER_INVALID", "tags must be an array of strings");
  }
  const endpoint = str(b, "listen_endpoint", 64);
  if (endpoint !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d{1,5}$/.test(endpoint)) {
    throw new TabbifyError("PEER_INVALID", "listen_endpoint must be IP:PORT or [IPv6]:PORT");
  }
  const req: MeshRegisterRequest = {
    wg_public_key: wgKey(b),
    wg_listen_port: port,
    display_name: need(b, "display_name", 128),
  };
  const optional = {
    listen_endpoint: endpoint,
    requested_ula: str(b, "requested_ula", 64),
    network: str(b, "network", 64),
    tags: tags as string[] | undefined,
    hosted_app_ulas: appUlas(b),
    kind: str(b, "kind", 32),
    software_version: str(b, "software_version", 64),
    mesh_version: str(b, "mesh_version", 64),
  };
  for (const [k, v] of Object.entries(optional))
    if (v !== undefined) (req as unknown as Record<string, unknown>)[k] = v;
  return req;
}

function parseHeartbeat(body: unknown): MeshHeartbeatRequest {
  const b = object(body, "a mesh heartbeat");
  const req: MeshHeartbeatRequest = { peer_id: need(b, "peer_id", 64), wg_public_key: wgKey(b) };
  const ulas = appUlas(b);
  if (ulas) req.hosted_app_ulas = ulas;
  const paths = b.peer_paths;
  if (paths !== undefined) {
    if (!Array.isArray(paths) || paths.length > MAX_PATHS) {
      throw new TabbifyError("PEER_INVALID", "peer_paths must be an array");
    }
    req.peer_paths = paths.map((p) => {
      const o = object(p, "a peer path");
      const rtt = o.rtt_ms;
      return {
        peer_id: need(o, "peer_id", 64),
        path: need(o, "path", 32),
        ...(typeof rtt === "number" && Number.isFinite(rtt) ? { rtt_ms: rtt } : {}),
      };
    });
  }
  if (typeof b.dataplane_healthy === "boolean") req.dataplane_healthy = b.dataplane_healthy;
  if (typeof b.peers_version === "number" && Number.isSafeInteger(b.peers_version))
    req.peers_version = b.peers_version;
  return req;
}
