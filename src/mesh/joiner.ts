import crypto from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Static } from "@sinclair/typebox";
import { backoffDelay } from "../core/backoff.js";
import { isErrno } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import type { MeshRegisterReply as RegisterReplySchema } from "../node/schemas/mesh.js";
import { MeshApiClient } from "./mesh-client.js";
import type { MeshPeerInfo, MeshPeerPath } from "./wire.js";

/** The node's answer, typed by its route schema (src/node/schemas/mesh.ts). */
type MeshRegisterReply = Static<typeof RegisterReplySchema>;

import type { WireGuardInterface } from "./wireguard.js";

export const IDENTITY_FILE = "mesh-identity.json";

/**
 * WireGuard re-handshakes at least every 2 minutes on a live session with keepalives (REKEY_AFTER_TIME
 * is 120 s, and persistent-keepalive is 25 s), so a peer silent for longer than this is down.
 */
export const HANDSHAKE_STALE_SECS = 180;

/**
 * The paths this host sees to its peers, from WireGuard's own handshake times: `direct` when the
 * last handshake is fresh, `down` when it is stale or never happened.
 */
export function peerPaths(
  peers: Iterable<MeshPeerInfo>,
  handshakes: Map<string, number>,
  nowSecs: number,
): MeshPeerPath[] {
  return [...peers].map((p) => {
    const at = handshakes.get(p.wg_public_key) ?? 0;
    return { peer_id: p.peer_id, path: at > 0 && nowSecs - at <= HANDSHAKE_STALE_SECS ? "direct" : "down" };
  });
}

export interface MeshIdentity {
  /** base64 X25519 private key. */
  private_key: string;
  public_key: string;
  /** The last address the coordinator gave us. */
  ula?: string;
}

/** Loads `<dir>/mesh-identity.json`, or creates it (0600) with a fresh X25519 key. */
export async function loadOrCreateIdentity(dir: string): Promise<MeshIdentity> {
  const path = join(dir, IDENTITY_FILE);
  try {
    return JSON.parse(await readFile(path, "utf8")) as MeshIdentity;
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
  const { privateKey, publicKey } = crypto.generateKeyPairSync("x25519");
  const priv = privateKey.export({ format: "jwk" }).d as string;
  const pub = publicKey.export({ format: "jwk" }).x as string;
  const identity: MeshIdentity = {
    private_key: Buffer.from(priv, "base64url").toString("base64"),
    public_key: Buffer.from(pub, "base64url").toString("base64"),
  };
  await writeFile(path, `${JSON.stringify(identity)}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return identity;
}

export interface MeshJoinerOptions {
  coordinatorUrl: string;
  /** `TABBIFY_MESH_JOIN_TOKEN`: sent as Bearer, never logged. */
  token: string;
  dataDir: string;
  displayName: string;
  tags: string[];
  listenPort: number;
  /** A fixed address to claim, e.g. the registry's (needs a granting token). */
  requestedUla?: string;
  /** Where our WireGuard listens, when the coordinator cannot see it as our source address. */
  listenEndpoint?: string;
  wg: WireGuardInterface;
  /** App addresses this host serves, read on every heartbeat. */
  hostedAppUlas: () => Promise<string[]> | string[];
  logger: Logger;
  /** Overrides the interval the coordinator asks for (`heartbeat_interval_secs`, 20 s by default). */
  heartbeatMs?: number;
}

/**
 * Keeps this host in the WireGuard mesh: registers with the join token, brings the interface up
 * with its ULA, heartbeats (registering again on 404), and follows the peers stream so every
 * peer's host ULA and hosted app ULAs route through the tunnel. A lost coordinator leaves the
 * tunnels as they are: the data plane does not depend on the control plane being up.
 */
export class MeshJoiner {
  private identity: MeshIdentity | undefined;
  private peerId: string | undefined;
  private peers = new Map<string, MeshPeerInfo>();
  private timer: NodeJS.Timeout | undefined;
  private stream: AbortController | undefined;
  private stopped = false;
  private beating: Promise<void> | undefined;
  private beatAgain = false;
  /** Beats failed in a row; a failed beat is tried again sooner than the interval. */
  private failedBeats = 0;
  private applying: Promise<void> = Promise.resolve();
  private readonly api: MeshApiClient;
  private intervalMs = 20_000;
  /** The coordinator's `peers_version` our peer set reflects; heartbeats skip the list when current. */
  private peersVersion: number | undefined;
  ula: string | undefined;

  constructor(private readonly opts: MeshJoinerOptions) {
    this.api = new MeshApiClient(opts.coordinatorUrl, opts.token);
  }

  /** Registers (retrying until the coordinator answers) and brings the interface up; returns our ULA. */
  async start(): Promise<string> {
    const identity = await loadOrCreateIdentity(this.opts.dataDir);
    this.identity = identity;
    let reply: MeshRegisterReply | undefined;
    for (let attempt = 1; !reply; attempt++) {
      try {
        reply = await this.register();
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status && status < 500 && status !== 404) throw err;
        this.opts.logger.warn("coordinator not reachable; retrying", { error: (err as Error).message });
        await sleep(backoffDelay(attempt, 500, 10_000));
      }
    }
    const keyFile = join(this.opts.dataDir, "mesh-wg.key");
    await writeFile(keyFile, `${identity.private_key}\n`, { mode: 0o600 });
    await this.opts.wg.up({ privateKeyFile: keyFile, listenPort: this.opts.listenPort, ula: reply.ula });
    if (identity.ula !== reply.ula) {
      identity.ula = reply.ula;
      await writeFile(join(this.opts.dataDir, IDENTITY_FILE), `${JSON.stringify(identity)}\n`, {
        mode: 0o600,
      });
    }
    await this.replacePeers(reply.peers ?? [], reply.peers_version);
    this.schedule();
    this.follow();
    return reply.ula;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.stream?.abort();
    await this.beating;
    if (this.peerId) await this.api.post("/v1/mesh/deregister", { peer_id: this.peerId }).catch(() => {});
    await this.applying;
    await this.opts.wg.down();
  }

  private async register(): Promise<MeshRegisterReply> {
    const id = this.identity as MeshIdentity;
    const reply = (await this.api.post("/v1/mesh/register", {
      wg_public_key: id.public_key,
      wg_listen_port: this.opts.listenPort,
      display_name: this.opts.displayName,
      tags: this.opts.tags,
      hosted_app_ulas: await this.opts.hostedAppUlas(),
      requested_ula: this.opts.requestedUla ?? id.ula,
      ...(this.opts.listenEndpoint ? { listen_endpoint: this.opts.listenEndpoint } : {}),
    })) as MeshRegisterReply;
    this.peerId = reply.peer_id;
    this.ula = reply.ula;
    if (Number.isFinite(reply.heartbeat_interval_secs) && reply.heartbeat_interval_secs > 0)
      this.intervalMs = reply.heartbeat_interval_secs * 1000;
    return reply;
  }

  /**
   * This host started or stopped serving an app address: tell the coordinator now rather than at
   * the next heartbeat, so every peer routes a moved app to its new host at once.
   */
  hostedChanged(): void {
    if (this.stopped || this.peerId === undefined) return;
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.runBeat();
  }

  private get beatIntervalMs(): number {
    return this.opts.heartbeatMs ?? this.intervalMs;
  }

  /**
   * After a failed beat (a cut link, a restarting node) the next comes after 0.5 s, doubling up
   * to the interval: a host whose link returns is live again within moments, not an interval
   * later, and the coordinator is not hammered while it stays unreachable.
   */
  private schedule(): void {
    if (this.stopped) return;
    const interval = this.beatIntervalMs;
    const delay = this.failedBeats === 0 ? interval : backoffDelay(this.failedBeats, 500, interval);
    this.timer = setTimeout(() => this.runBeat(), delay);
    this.timer.unref();
  }

  /** One beat at a time; a change announced during one beats again right after it. */
  private runBeat(): void {
    this.beatAgain = false;
    this.beating = this.beat()
      .then(
        () => {
          this.failedBeats = 0;
        },
        (err: Error) => {
          this.failedBeats++;
          this.opts.logger.warn("mesh heartbeat failed", { error: err.message, in_a_row: this.failedBeats });
        },
      )
      .finally(() => {
        this.beating = undefined;
        if (this.stopped) return;
        if (this.beatAgain) this.runBeat();
        else this.schedule();
      });
  }

  private async beat(): Promise<void> {
    const id = this.identity as MeshIdentity;
    const peerId = this.peerId;
    if (peerId === undefined) return this.rejoin();
    try {
      const reply = (await this.api.post(
        "/v1/mesh/heartbeat",
        {
          peer_id: peerId,
          wg_public_key: id.public_key,
          hosted_app_ulas: await this.opts.hostedAppUlas(),
          ...(await this.dataplaneReport()),
          ...(this.peersVersion !== undefined ? { peers_version: this.peersVersion } : {}),
        },
        // A beat stuck on a dead link must not hold back the retry that would get through.
        Math.min(10_000, Math.max(1000, this.beatIntervalMs / 2)),
      )) as MeshRegisterReply;
      if (reply.peers) await this.replacePeers(reply.peers, reply.peers_version);
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err;
      this.opts.logger.info("coordinator forgot this peer; registering again");
      await this.rejoin();
    }
  }

  private async rejoin(): Promise<void> {
    const again = await this.register();
    await this.replacePeers(again.peers ?? [], again.peers_version);
  }

  /** `peer_paths` and `dataplane_healthy` for a heartbeat; empty when `wg` cannot tell. */
  private async dataplaneReport(): Promise<{ peer_paths?: MeshPeerPath[]; dataplane_healthy?: boolean }> {
    try {
      const others = [...this.peers.values()].filter(
        (p) => p.peer_id !== this.peerId && p.wg_public_key !== this.identity?.public_key,
      );
      const handshakes = await this.opts.wg.latestHandshakes();
      return {
        peer_paths: peerPaths(others, handshakes, Math.floor(Date.now() / 1000)),
        dataplane_healthy: await this.opts.wg.isUp(),
      };
    } catch (err) {
      this.opts.logger.warn("could not read wireguard state", { error: (err as Error).message });
      return {};
    }
  }

  /** Follows `GET /v1/mesh/peers/stream`, reconnecting after a drop. */
  private follow(): void {
    if (this.stopped) return;
    const ac = new AbortController();
    this.stream = ac;
    const reconnect = () => {
      if (!this.stopped) setTimeout(() => this.follow(), 2000).unref();
    };
    (async () => {
      for await (const { event, data } of this.api.peerEvents(ac.signal)) this.onEvent(event, data);
    })()
      .catch((err: Error) => {
        if (!this.stopped)
          this.opts.logger.warn("peers stream dropped; reconnecting", { error: err.message });
      })
      .finally(reconnect);
  }

  private onEvent(event: string, data: string): void {
    const body = JSON.parse(data) as { peers?: MeshPeerInfo[]; peer?: MeshPeerInfo; peers_version?: number };
    if (event === "snapshot" && body.peers) {
      void this.replacePeers(body.peers, body.peers_version);
      return;
    }
    // An event we skipped (another network's) leaves a gap: the next heartbeat resends the list.
    if (this.peersVersion !== undefined && body.peers_version === this.peersVersion + 1)
      this.peersVersion = body.peers_version;
    else this.peersVersion = undefined;
    if (body.peer && event === "leave") {
      this.peers.delete(body.peer.peer_id);
      void this.apply();
    } else if (body.peer) {
      this.peers.set(body.peer.peer_id, body.peer);
      void this.apply();
    }
  }

  private replacePeers(peers: MeshPeerInfo[], version?: number): Promise<void> {
    this.peers = new Map(peers.map((p) => [p.peer_id, p]));
    this.peersVersion = version;
    return this.apply();
  }

  /** Serialized: one `wg`/`ip` reconciliation at a time, always to the latest peer set. */
  private apply(): Promise<void> {
    this.applying = this.applying.then(async () => {
      const desired = [...this.peers.values()]
        .filter((p) => p.peer_id !== this.peerId && p.wg_public_key !== this.identity?.public_key)
        .map((p) => ({
          publicKey: p.wg_public_key,
          endpoint: p.listen_endpoint,
          allowedUlas: [p.ula, ...p.hosted_app_ulas],
        }));
      try {
        await this.opts.wg.setPeers(desired);
      } catch (err) {
        this.opts.logger.error("could not apply mesh peers", { error: (err as Error).message });
      }
    });
    return this.applying;
  }
}
