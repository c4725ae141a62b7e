import { v7 as uuidV7 } from "uuid";
import { deriveAppUla, parseAppUuid } from "../core/address.js";
import { TabbifyError } from "../core/errors.js";
import type { PeerInfo, PeerKind, PeerRecord, RegisterReply } from "./roster.js";

export interface RosterCoordinatorOptions {
  /** A peer silent for longer than this is dropped. Default 60 s. */
  heartbeatTimeoutMs?: number;
  /** What register replies tell peers to beat at. Default 5 s, or a third of a shorter timeout. */
  heartbeatIntervalSecs?: number;
  /** Clock, injectable for tests. */
  now?: () => number;
}

export interface TopologyRunner {
  app_uuid: string;
  app_ula: string;
  /** Where the runner says the app is bound (its loopback twin in `local` mesh mode). */
  address: string;
  last_seen: string;
}

export interface TopologySupervisor {
  ula: string;
  display_name: string;
  address: string;
  tags: string[];
  version: string;
  last_seen: string;
  runners: TopologyRunner[];
}

export interface Topology {
  supervisors: TopologySupervisor[];
  orphaned: (TopologyRunner & { parent: string | null })[];
  /**
   * Supervisors that went silent without deregistering (a lost host), with the runners lost
   * with them: their apps are down (the proxy answers 502, not 404) until they come back.
   */
  down: (TopologySupervisor & { down_since: string })[];
}

/** How long a lost peer is remembered as down, and how many are. */
const LOST_RETENTION_MS = 24 * 3600_000;
const MAX_LOST = 4096;

interface Entry {
  info: PeerInfo;
  lastSeenMs: number;
}

const peerKinds: readonly PeerKind[] = ["supervisor", "runner"];

/** `kind` and `name` identify a peer; the NUL cannot occur in a validated name. */
function peerKey(kind: PeerKind, name: string): string {
  return `${kind}\0${name}`;
}

/**
 * Validates a PeerRecord from the wire. Throws PEER_INVALID with a message naming the field.
 * Runners are keyed by their app uuid, so `name` and `app_uuid` must agree (either may be given).
 */
export function parsePeerRecord(body: unknown): PeerRecord {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TabbifyError("PEER_INVALID", "peer record must be a JSON object");
  }
  const b = body as Record<string, unknown>;
  const str = (field: string, optional = false): string | undefined => {
    const v = b[field];
    if (v === undefined || v === null) {
      if (optional) return undefined;
      throw new TabbifyError("PEER_INVALID", `peer record field "${field}" is required`);
    }
    if (typeof v !== "string")
      throw new TabbifyError("PEER_INVALID", `peer record field "${field}" must be a string`);
    if (v.length > 512) throw new TabbifyError("PEER_INVALID", `peer record field "${field}" is too long`);
    return v;
  };
  const kind = str("kind") as PeerKind;
  if (!peerKinds.includes(kind)) {
    throw new TabbifyError("PEER_INVALID", `peer kind must be one of ${peerKinds.join(", ")}, got "${kind}"`);
  }
  let name = str("name", kind === "runner") ?? "";
  const address = str("address") as string;
  const ula = str("ula") as string;
  const version = str("version") as string;
  const tagsRaw = b.tags ?? [];
  if (!Array.isArray(tagsRaw) || tagsRaw.some((t) => typeof t !== "string")) {
    throw new TabbifyError("PEER_INVALID", 'peer record field "tags" must be an array of strings');
  }
  const record: PeerRecord = { kind, name, address, ula, version, tags: [...(tagsRaw as string[])] };
  if (kind === "runner") {
    const given = str("app_uuid", true) ?? name;
    if (!given) throw new TabbifyError("PEER_INVALID", 'a runner needs "app_uuid" (or its uuid as "name")');
    const appUuid = parseAppUuid(given);
    if (name && name.toLowerCase() !== appUuid) {
      throw new TabbifyError("PEER_INVALID", `runner name "${name}" differs from its app_uuid ${appUuid}`);
    }
    name = appUuid;
    record.name = appUuid;
    record.app_uuid = appUuid;
    const parent = str("parent", true);
    if (parent) record.parent = parent;
  } else if (name.trim() === "") {
    throw new TabbifyError("PEER_INVALID", "a supervisor needs a non-empty name");
  }
  return record;
}

/**
 * The in-memory roster the node hosts. Peers register, heartbeat the full record, and are
 * dropped after the heartbeat timeout; expiry is checked lazily on read, so no timer runs.
 * A peer's id is stable per (kind, name) for the coordinator's lifetime, across re-registration.
 */
export class RosterCoordinator {
  readonly heartbeatTimeoutMs: number;
  readonly heartbeatIntervalSecs: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  /** Survives expiry, so a peer that comes back keeps its id. */
  private readonly idsByKey = new Map<string, string>();
  private readonly keysById = new Map<string, string>();
  /** Peers that expired without deregistering, by key, with when they were lost. */
  private readonly lost = new Map<string, { info: PeerInfo; sinceMs: number }>();
  private readonly lostListeners = new Set<(peer: PeerInfo) => void>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(opts: RosterCoordinatorOptions = {}) {
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 60_000;
    // Three beats fit in one timeout, so one lost heartbeat never drops a peer.
    this.heartbeatIntervalSecs =
      opts.heartbeatIntervalSecs ?? Math.min(5, Math.max(1, Math.floor(this.heartbeatTimeoutMs / 3000)));
    this.now = opts.now ?? Date.now;
  }

  register(record: PeerRecord): RegisterReply {
    const key = peerKey(record.kind, record.name);
    let peerId = this.idsByKey.get(key);
    if (!peerId) {
      peerId = uuidV7();
      this.idsByKey.set(key, peerId);
      this.keysById.set(peerId, key);
    }
    const now = this.now();
    const live = this.live(key);
    const stamp = new Date(now).toISOString();
    this.lost.delete(key);
    this.entries.set(key, {
      info: { ...record, peer_id: peerId, joined_at: live?.info.joined_at ?? stamp, last_seen: stamp },
      lastSeenMs: now,
    });
    return { peer_id: peerId, heartbeat_interval_secs: this.heartbeatIntervalSecs };
  }

  /** Refreshes a live peer with its full record. Throws PEER_UNKNOWN when the peer must register. */
  heartbeat(record: PeerRecord): RegisterReply {
    const key = peerKey(record.kind, record.name);
    const live = this.live(key);
    if (!live) {
      throw new TabbifyError(
        "PEER_UNKNOWN",
        `${record.kind} "${record.name}" is not registered; register again`,
      );
    }
    const now = this.now();
    live.info = {
      ...record,
      peer_id: live.info.peer_id,
      joined_at: live.info.joined_at,
      last_seen: new Date(now).toISOString(),
    };
    live.lastSeenMs = now;
    return { peer_id: live.info.peer_id, heartbeat_interval_secs: this.heartbeatIntervalSecs };
  }

  /** Removes a peer; false when the id is unknown or already gone. */
  deregister(peerId: string): boolean {
    const key = this.keysById.get(peerId);
    if (key !== undefined) this.lost.delete(key);
    return key !== undefined && this.entries.delete(key);
  }

  /** Live peers, supervisors first, then by name. */
  peers(): PeerInfo[] {
    this.sweep();
    return [...this.entries.values()]
      .map((e) => e.info)
      .sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === "supervisor" ? -1 : 1));
  }

  supervisors(): PeerInfo[] {
    return this.peers().filter((p) => p.kind === "supervisor");
  }

  runners(): PeerInfo[] {
    return this.peers().filter((p) => p.kind === "runner");
  }

  runnersOf(supervisorName: string): PeerInfo[] {
    return this.runners().filter((p) => p.parent === supervisorName);
  }

  /** Runners whose parent supervisor is not on the roster (or who never named one). */
  orphanedRunners(): PeerInfo[] {
    this.sweep();
    return this.runners().filter((p) => !p.parent || !this.live(peerKey("supervisor", p.parent)));
  }

  /**
   * O(1): the proxy asks this on every request. A runner lost with its host still counts: its
   * app is known and down (502), not unknown (404).
   */
  hasApp(uuid: string): boolean {
    const key = peerKey("runner", uuid);
    if (this.live(key) !== undefined) return true;
    const lost = this.lost.get(key);
    return lost !== undefined && this.now() - lost.sinceMs <= LOST_RETENTION_MS;
  }

  /**
   * Calls `listener` with every peer that goes silent without deregistering, found by a sweep
   * timer (the roster is otherwise swept lazily on read), until the returned function is called.
   */
  onLost(listener: (peer: PeerInfo) => void): () => void {
    this.lostListeners.add(listener);
    if (!this.sweeper) {
      this.sweeper = setInterval(
        () => this.sweep(),
        Math.min(5000, Math.max(100, this.heartbeatTimeoutMs / 4)),
      );
      this.sweeper.unref();
    }
    return () => {
      this.lostListeners.delete(listener);
      if (this.lostListeners.size === 0 && this.sweeper) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    };
  }

  /** Lost runners: apps whose runner went silent without deregistering. */
  downRunners(): PeerInfo[] {
    this.sweep();
    return [...this.lost.values()].map((l) => l.info).filter((p) => p.kind === "runner");
  }

  /** The live runner for an app, if any. */
  runnerFor(uuid: string): PeerInfo | undefined {
    return this.live(peerKey("runner", uuid))?.info;
  }

  /** The live supervisor whose live runner serves an app, if any. */
  supervisorOf(uuid: string): PeerInfo | undefined {
    const parent = this.runnerFor(uuid)?.parent;
    return parent === undefined ? undefined : this.live(peerKey("supervisor", parent))?.info;
  }

  /** Live supervisors not heard from for longer than `lateMs` (a heartbeat or more missed). */
  lateSupervisors(lateMs: number): PeerInfo[] {
    this.sweep();
    const cutoff = this.now() - lateMs;
    const late: PeerInfo[] = [];
    for (const entry of this.entries.values())
      if (entry.info.kind === "supervisor" && entry.lastSeenMs < cutoff) late.push(entry.info);
    return late;
  }

  /**
   * A supervisor whose host stopped answering (found out before its heartbeat timeout): it and
   * its runners leave the roster now and are listed down, as if they had gone silent. They come
   * back with their next heartbeat (answered 404, so they register again). False when the
   * supervisor was not live.
   */
  markLost(supervisorName: string): boolean {
    const key = peerKey("supervisor", supervisorName);
    const entry = this.live(key);
    if (!entry) return false;
    this.expire(key, entry, this.now());
    for (const [k, e] of [...this.entries])
      if (e.info.kind === "runner" && e.info.parent === supervisorName) this.expire(k, e, this.now());
    return true;
  }

  topology(): Topology {
    const peers = this.peers();
    const supervisorNames = new Set(peers.filter((p) => p.kind === "supervisor").map((p) => p.name));
    const runnerView = (r: PeerInfo): TopologyRunner => {
      const uuid = r.app_uuid ?? r.name;
      return { app_uuid: uuid, app_ula: deriveAppUla(uuid), address: r.address, last_seen: r.last_seen };
    };
    const supervisorView = (s: PeerInfo, runners: PeerInfo[]): TopologySupervisor => ({
      ula: s.ula,
      display_name: s.name,
      address: s.address,
      tags: s.tags,
      version: s.version,
      last_seen: s.last_seen,
      runners: runners.filter((r) => r.parent === s.name).map(runnerView),
    });
    const liveRunners = peers.filter((r) => r.kind === "runner");
    const supervisors = peers
      .filter((p) => p.kind === "supervisor")
      .map((s) => supervisorView(s, liveRunners));
    const orphaned = peers
      .filter((r) => r.kind === "runner" && !(r.parent && supervisorNames.has(r.parent)))
      .map((r) => ({ ...runnerView(r), parent: r.parent ?? null }));
    const lostRunners = this.downRunners();
    const down = [...this.lost.values()]
      .filter((l) => l.info.kind === "supervisor")
      .map(({ info: s, sinceMs }) => ({
        ...supervisorView(s, lostRunners),
        down_since: new Date(sinceMs).toISOString(),
      }));
    return { supervisors, orphaned, down };
  }

  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (this.now() - entry.lastSeenMs > this.heartbeatTimeoutMs) {
      this.expire(key, entry, entry.lastSeenMs + this.heartbeatTimeoutMs);
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    const now = this.now();
    const cutoff = now - this.heartbeatTimeoutMs;
    for (const [key, entry] of this.entries)
      if (entry.lastSeenMs < cutoff) this.expire(key, entry, entry.lastSeenMs + this.heartbeatTimeoutMs);
    for (const [key, l] of this.lost) if (now - l.sinceMs > LOST_RETENTION_MS) this.lost.delete(key);
  }

  /** A silent peer leaves the roster and is remembered as down. */
  private expire(key: string, entry: Entry, sinceMs: number): void {
    this.entries.delete(key);
    if (this.lost.size >= MAX_LOST) {
      const oldest = this.lost.keys().next().value;
      if (oldest !== undefined) this.lost.delete(oldest);
    }
    this.lost.set(key, { info: entry.info, sinceMs });
    for (const listener of this.lostListeners) listener(entry.info);
  }
}
