import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";

const exec = promisify(execFile);

export interface WireGuardPeer {
  publicKey: string;
  /** `[ip]:port`, or null when the peer's endpoint is unknown (it will reach us). */
  endpoint: string | null;
  /** Addresses routed to this peer: its host ULA and the app ULAs it hosts, each a /128. */
  allowedUlas: string[];
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    return (await exec(cmd, args, { timeout: 10_000 })).stdout;
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === "ENOENT") {
      throw new TabbifyError(
        "MESH_ENGINE_MISSING",
        `${cmd} is not installed: apt-get install -y wireguard-tools wireguard-go iproute2`,
      );
    }
    throw new TabbifyError(
      "MESH_INTERFACE_FAILED",
      `${cmd} ${args.join(" ")}: ${String(e.stderr ?? err).trim()}`,
    );
  }
}

/**
 * One WireGuard interface, driven with `ip` and `wg`: the kernel module when `ip link add … type
 * wireguard` works, else Debian's userspace `wireguard-go` (a child of this process). WireGuard
 * itself is never implemented here. Peers and their /128 routes are reconciled to a desired set.
 */
export class WireGuardInterface {
  private goProcess: ChildProcess | undefined;
  private readonly peers = new Map<string, WireGuardPeer>();
  /** This interface's own routing table, chosen by packets from its ULA (see `up`). */
  readonly table: number;
  engine: "kernel" | "wireguard-go" | "adopted" | undefined;
  /** Peers found on an adopted interface, removed unless the first reconcile wants them. */
  private stalePeers: string[] = [];

  constructor(
    readonly name: string,
    private readonly logger: Logger,
  ) {
    this.table = sourceRouteTable(name);
  }

  async up(opts: { privateKeyFile: string; listenPort: number; ula: string }): Promise<void> {
    // An interface left by our previous process (killed, or restarting) still carries traffic:
    // adopt it rather than cut every tunnel, and drop its stale peers at the first reconcile.
    const leftPeers = await run("wg", ["show", this.name, "peers"]).then(
      (out) => out.split("\n").filter(Boolean),
      () => undefined,
    );
    if (leftPeers) {
      this.engine = "adopted";
      this.stalePeers = leftPeers;
    } else {
      await run("ip", ["link", "del", this.name]).catch(() => {});
      try {
        await run("ip", ["link", "add", this.name, "type", "wireguard"]);
        this.engine = "kernel";
      } catch {
        await this.startWireguardGo();
        this.engine = "wireguard-go";
      }
    }
    // Setting the listen port rebinds wireguard-go's socket: an adopted interface that already
    // has our key and port is left alone, so a restart does not drop packets in flight.
    if (!(this.engine === "adopted" && (await this.configuredAs(opts.privateKeyFile, opts.listenPort)))) {
      await run("wg", [
        "set",
        this.name,
        "private-key",
        opts.privateKeyFile,
        "listen-port",
        String(opts.listenPort),
      ]);
    }
    await run("ip", ["-6", "addr", "replace", `${opts.ula}/128`, "dev", this.name, "nodad"]);
    await run("ip", ["link", "set", this.name, "up"]);
    // Two joiners on one host (the node and the registry) share the main routing table, where
    // the lowest metric routes a peer. A packet leaving from this interface's ULA must leave
    // through this interface (the far side accepts only the ULAs of the peer that sent it), so
    // it follows a rule to a table of this interface's own routes.
    await this.dropSourceRule();
    await run("ip", [
      "-6",
      "rule",
      "add",
      "from",
      `${opts.ula}/128`,
      "lookup",
      String(this.table),
      "priority",
      String(this.table),
    ]);
    this.logger.info("wireguard interface up", { interface: this.name, engine: this.engine, ula: opts.ula });
  }

  /** Makes the interface's peers (and /128 routes) exactly `desired`. */
  async setPeers(desired: WireGuardPeer[]): Promise<void> {
    const want = new Map(desired.map((p) => [p.publicKey, p]));
    // An address that moved to another peer keeps its route (the interface is the same): only
    // addresses no peer claims any more lose theirs.
    const claimed = new Set(desired.flatMap((p) => p.allowedUlas));
    for (const key of this.stalePeers.splice(0)) {
      if (!want.has(key)) await run("wg", ["set", this.name, "peer", key, "remove"]).catch(() => {});
    }
    for (const [key, had] of this.peers) {
      if (want.has(key)) continue;
      await run("wg", ["set", this.name, "peer", key, "remove"]).catch(() => {});
      for (const ula of had.allowedUlas) if (!claimed.has(ula)) await this.routeDel(ula);
      this.peers.delete(key);
    }
    for (const peer of desired) {
      const had = this.peers.get(peer.publicKey);
      if (had && had.endpoint === peer.endpoint && same(had.allowedUlas, peer.allowedUlas)) continue;
      const args = ["set", this.name, "peer", peer.publicKey, "persistent-keepalive", "25"];
      if (peer.endpoint) args.push("endpoint", peer.endpoint);
      args.push("allowed-ips", peer.allowedUlas.map((u) => `${u}/128`).join(","));
      await run("wg", args);
      for (const ula of had?.allowedUlas ?? [])
        if (!peer.allowedUlas.includes(ula) && !claimed.has(ula)) await this.routeDel(ula);
      for (const ula of peer.allowedUlas) {
        for (const table of this.routeTables())
          await run("ip", ["-6", "route", "replace", ...this.route(ula, table)]);
      }
      this.peers.set(peer.publicKey, { ...peer, allowedUlas: [...peer.allowedUlas] });
    }
  }

  /**
   * When each peer last completed a handshake (`wg show <if> latest-handshakes`), in epoch
   * seconds; 0 for a peer that never has. Keyed by public key.
   */
  async latestHandshakes(): Promise<Map<string, number>> {
    return parseLatestHandshakes(await run("wg", ["show", this.name, "latest-handshakes"]));
  }

  /** True while the interface exists and is up (the data plane this host offers). */
  async isUp(): Promise<boolean> {
    return run("ip", ["-j", "link", "show", "dev", this.name]).then(
      (out) => /"UP"/.test(out),
      () => false,
    );
  }

  async down(): Promise<void> {
    await this.dropSourceRule();
    await run("ip", ["link", "del", this.name]).catch(() => {});
    this.goProcess?.kill("SIGTERM");
    this.goProcess = undefined;
    this.peers.clear();
  }

  private async routeDel(ula: string): Promise<void> {
    for (const table of this.routeTables())
      await run("ip", ["-6", "route", "del", ...this.route(ula, table)]).catch(() => {});
  }

  /** Peer routes go in the main table (for unbound sockets) and in this interface's own. */
  private routeTables(): string[] {
    return ["main", String(this.table)];
  }

  /**
   * A route with this interface's own metric: two joiners on one host each keep their own entry
   * for a peer in the main table (IPv6 keys routes by metric too), so one replacing or removing
   * its entry never takes the other's.
   */
  private route(ula: string, table: string): string[] {
    return [`${ula}/128`, "dev", this.name, "table", table, "metric", String(this.table)];
  }

  private async configuredAs(privateKeyFile: string, listenPort: number): Promise<boolean> {
    const [key, port, want] = await Promise.all([
      run("wg", ["show", this.name, "private-key"]).catch(() => ""),
      run("wg", ["show", this.name, "listen-port"]).catch(() => ""),
      readFile(privateKeyFile, "utf8").catch(() => "-"),
    ]);
    return key.trim() === want.trim() && port.trim() === String(listenPort);
  }

  /** Removes every rule pointing at this interface's table (a previous process may have left one). */
  private async dropSourceRule(): Promise<void> {
    for (let i = 0; i < 8; i++) {
      const gone = await run("ip", ["-6", "rule", "del", "lookup", String(this.table)]).then(
        () => false,
        () => true,
      );
      if (gone) return;
    }
  }

  private async startWireguardGo(): Promise<void> {
    const child = spawn("wireguard-go", ["--foreground", this.name], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LOG_LEVEL: "error" },
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once("error", resolve);
      child.once("spawn", () => resolve(undefined));
    });
    if (spawned) {
      throw new TabbifyError(
        "MESH_ENGINE_MISSING",
        "no kernel WireGuard and wireguard-go is not installed: apt-get install -y wireguard-go wireguard-tools",
      );
    }
    this.goProcess = child;
    child.once("exit", (code) => {
      if (this.goProcess === child) this.logger.error("wireguard-go exited", { code, stderr: stderr.trim() });
    });
    // wireguard-go creates the TUN device and its UAPI socket shortly after starting.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (
        await run("wg", ["show", this.name])
          .then(() => true)
          .catch(() => false)
      )
        return;
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    throw new TabbifyError(
      "MESH_INTERFACE_FAILED",
      `wireguard-go ${this.name} did not come up: ${stderr.trim()}`,
    );
  }
}

export function parseLatestHandshakes(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, secs] = line.trim().split(/\s+/);
    if (key && secs !== undefined && /^\d+$/.test(secs)) out.set(key, Number(secs));
  }
  return out;
}

function same(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * A routing table number (and rule priority) per interface name, in 10000..29999: clear of the
 * local (0), main (32766) and default (32767) rules and of the small numbers other tools use.
 */
export function sourceRouteTable(interfaceName: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(interfaceName)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return 10_000 + (h % 20_000);
}
