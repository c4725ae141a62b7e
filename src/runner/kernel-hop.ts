import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";

const execFileAsync = promisify(execFile);

/**
 * The runner's hop in the kernel: one nftables `inet` table (created and reconciled by the
 * supervisor, see supervisor/nft-hop.ts) whose `nat` chains on the `output` (locally generated)
 * and `prerouting` (forwarded) hooks look `<app address> . <app port>` up in a verdict map, one
 * per address family, and jump to the app's own chain, which holds one DNAT rule to the current
 * workload. A runner rewrites only its own chain, in one `nft -f` transaction, so a swap moves new
 * connections to the new workload atomically while established ones keep their conntrack
 * mapping to the old one.
 *
 * IPv4 apps map to IPv4 workloads and IPv6 apps (ULAs) to IPv6 workloads: the kernel does not
 * translate between families (no NAT46), so an IPv6 app whose workload listens on 127.0.0.1 keeps
 * the userspace hop (see `kernelHopFits`).
 */

/** One app's mapping: its address:port to the workload's host:port. */
export interface HopElement {
  appHost: string;
  appPort: number;
  target: { host: string; port: number };
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

/** The table name, refused unless it is a plain identifier (it is spliced into nft scripts). */
export function checkTableName(table: string): string {
  if (!TABLE_NAME.test(table)) {
    throw new TabbifyError("USAGE", `nftables table name "${table}" must be a short identifier`);
  }
  return table;
}

/** 4 or 6 for a literal IP address, else a USAGE error (nothing else reaches an nft script). */
export function familyOf(host: string): 4 | 6 {
  const family = isIP(host);
  if (family === 0) throw new TabbifyError("USAGE", `the kernel hop takes IP literals, got "${host}"`);
  return family as 4 | 6;
}

function checkPort(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new TabbifyError("USAGE", `bad port ${value}`);
  }
  return value;
}

/** Why the kernel cannot carry this app's hop, or undefined when it can. */
export function kernelHopFits(appHost: string, target: { host: string }): string | undefined {
  const app = isIP(appHost);
  const workload = isIP(target.host);
  if (app === 0 || workload === 0) return "the app or workload address is not an IP literal";
  if (app !== workload) {
    return `the app address is IPv${app} and its workload listens on IPv${workload}; the kernel cannot DNAT across families`;
  }
  return undefined;
}

export function mapName(family: 4 | 6): string {
  return family === 4 ? "apps4" : "apps6";
}

/** `<addr> . <port>` as nft writes a concatenated key. */
function tuple(host: string, port: number): string {
  familyOf(host);
  return `${host} . ${checkPort(port)}`;
}

/**
 * The app's own chain: a pure function of its address and port, so the verdict map's element
 * for the app always holds the same `jump`, and re-adding it is never a conflict.
 */
export function appChain(appHost: string, appPort: number): string {
  const bytes = familyOf(appHost) === 4 ? appHost.split(".").map(Number) : ipv6Bytes(appHost);
  return `app_${bytes.map((b) => b.toString(16).padStart(2, "0")).join("")}_${checkPort(appPort)}`;
}

/** Creates the app's chain and map element if missing, leaving the chain empty. */
function emptyAppChain(table: string, appHost: string, appPort: number): string {
  const t = `inet ${checkTableName(table)}`;
  const chain = appChain(appHost, appPort);
  const key = tuple(appHost, appPort);
  return (
    `add chain ${t} ${chain}
flush chain ${t} ${chain}
` +
    `add element ${t} ${mapName(familyOf(appHost))} { ${key} : jump ${chain} }
`
  );
}

/**
 * Points one app at a workload: its chain is emptied and given one DNAT rule in the same
 * transaction, so there is no instant without a mapping.
 */
export function pointScript(table: string, e: HopElement): string {
  const misfit = kernelHopFits(e.appHost, e.target);
  if (misfit) throw new TabbifyError("USAGE", misfit);
  const family = familyOf(e.target.host);
  const to =
    family === 4
      ? `${e.target.host}:${checkPort(e.target.port)}`
      : `[${e.target.host}]:${checkPort(e.target.port)}`;
  return (
    emptyAppChain(table, e.appHost, e.appPort) +
    `add rule inet ${table} ${appChain(e.appHost, e.appPort)} meta l4proto tcp dnat ip${family === 4 ? "" : "6"} to ${to}
`
  );
}

/** Empties the app's chain: connections reach the runner's userspace listener again. */
export function clearScript(table: string, appHost: string, appPort: number): string {
  return emptyAppChain(table, appHost, appPort);
}

/** Removes the app from the table altogether (stop, purge); absent is fine. */
export function removeScript(table: string, appHost: string, appPort: number): string {
  const t = `inet ${checkTableName(table)}`;
  return (
    emptyAppChain(table, appHost, appPort) +
    `delete element ${t} ${mapName(familyOf(appHost))} { ${tuple(appHost, appPort)} }
` +
    `delete chain ${t} ${appChain(appHost, appPort)}
`
  );
}

/** Runs one nft script as one transaction. */
export function nftApply(script: string, binary = "nft"): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["-f", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      if (stderr.length < 4000) stderr += c;
    });
    child.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        new TabbifyError(
          "NFT_FAILED",
          err.code === "ENOENT" ? "nft is not installed (apt-get install nftables)" : err.message,
        ),
      ),
    );
    // "close", not "exit": it comes after stderr is read to its end, so the reason is never lost.
    child.on("close", (code) => {
      if (code === 0) resolve();
      else
        reject(new TabbifyError("NFT_FAILED", `nft -f refused the change: ${stderr.trim().slice(0, 500)}`));
    });
    child.stdin.on("error", () => {});
    child.stdin.end(script);
  });
}

/** Whether `nft` runs and may read the ruleset here (root or CAP_NET_ADMIN). */
export async function nftAvailable(binary = "nft"): Promise<{ ok: boolean; reason?: string }> {
  try {
    await execFileAsync(binary, ["list", "tables"]);
    return { ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    return {
      ok: false,
      reason:
        e.code === "ENOENT"
          ? "nft is not installed (apt-get install nftables)"
          : String(e.stderr ?? e.message).trim(),
    };
  }
}

/**
 * The runner's handle on its own element. `point` maps the app to a workload (first start, a
 * swap once the new one is healthy, a restart after a crash); `clear` removes the mapping so
 * connections reach the runner's userspace listener again (which answers 503 while no workload
 * serves). Changes are serialized: the last one asked for is the one left in the kernel.
 */
export class KernelHop {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly table: string,
    private readonly app: { host: string; port: number },
    private readonly binary = "nft",
  ) {
    checkTableName(table);
    familyOf(app.host);
    checkPort(app.port);
  }

  point(target: { host: string; port: number }): Promise<void> {
    const e: HopElement = { appHost: this.app.host, appPort: this.app.port, target };
    return this.serialized(() => nftApply(pointScript(this.table, e), this.binary));
  }

  clear(): Promise<void> {
    return this.serialized(() =>
      nftApply(clearScript(this.table, this.app.host, this.app.port), this.binary),
    );
  }

  private serialized(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step, step);
    this.queue = run.catch(() => {});
    return run;
  }
}

/**
 * Established TCP connections whose local end is `host:port` (the workload's side), from
 * /proc/net/tcp or tcp6: how a swap tells when the kernel-carried connections to the old
 * workload are gone.
 */
export async function establishedTo(host: string, port: number): Promise<number> {
  const family = familyOf(host);
  const text = await readFile(family === 4 ? "/proc/net/tcp" : "/proc/net/tcp6", "utf8").catch(() => "");
  const want = `${procAddress(host, family)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let count = 0;
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    // sl local_address rem_address st …; st 01 is ESTABLISHED.
    if (fields[1] === want && fields[3] === "01") count++;
  }
  return count;
}

/** An address as /proc/net/tcp{,6} prints it: 32-bit words in host (little-endian) order. */
function procAddress(host: string, family: 4 | 6): string {
  const bytes = family === 4 ? host.split(".").map(Number) : ipv6Bytes(host);
  let out = "";
  for (let i = 0; i < bytes.length; i += 4) {
    for (let j = 3; j >= 0; j--) out += bytes[i + j]!.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function ipv6Bytes(host: string): number[] {
  const [head = "", tail] = host.split("::");
  const groups = (s: string | undefined) => (s ? s.split(":").filter((g) => g !== "") : []);
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array(8 - left.length - right.length).fill("0"), ...right];
  return all.flatMap((g) => {
    const v = Number.parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

/** What a runner's health says about its hop. */
export interface HopState {
  hop: "kernel" | "userspace";
  /** Why the userspace hop carries the app although a kernel hop was asked for. */
  hop_reason?: string;
}

/**
 * The runner's use of its KernelHop: `to` after a workload took over (the userspace proxy has
 * been switched already, so a kernel failure only leaves the slower path), `off` when no workload
 * serves or the runner stops, `drained` for a swap's wait on the old workload. Without a
 * KernelHop every call is a no-op and the hop stays in userspace.
 */
export class HopSwitch {
  private state: HopState;

  constructor(
    private readonly kernel: KernelHop | undefined,
    private readonly warn: (message: string, fields: Record<string, unknown>) => void,
  ) {
    this.state = { hop: "userspace" };
  }

  get current(): HopState {
    return this.state;
  }

  /** `userspaceBecause`: why this workload keeps the userspace hop although the kernel could carry it. */
  async to(
    target: { host: string; port: number },
    appHost: string,
    userspaceBecause?: string,
  ): Promise<void> {
    if (!this.kernel) return;
    const misfit = userspaceBecause ?? kernelHopFits(appHost, target);
    try {
      if (misfit) {
        if (this.state.hop === "kernel") await this.kernel.clear();
        this.state = { hop: "userspace", hop_reason: misfit };
        return;
      }
      await this.kernel.point(target);
      this.state = { hop: "kernel" };
    } catch (err) {
      const reason = (err as Error).message;
      this.state = { hop: "userspace", hop_reason: reason };
      this.warn("kernel hop failed; the userspace hop carries the app", { reason });
      await this.kernel.clear().catch(() => {});
    }
  }

  async off(): Promise<void> {
    if (!this.kernel) return;
    try {
      await this.kernel.clear();
    } catch (err) {
      this.warn("could not remove the kernel hop", { reason: (err as Error).message });
    }
    if (this.state.hop === "kernel") this.state = { hop: "userspace" };
  }

  /**
   * After a swap moved the mapping: true once no established connection is left on the old
   * workload's port, false when `timeoutMs` passes first (a keep-alive pool lets go only when the
   * workload closes its connections: see runtimes/drain-hook.ts).
   */
  async drained(old: { host: string; port: number }, timeoutMs: number): Promise<boolean> {
    if (!this.kernel) return true;
    const deadline = Date.now() + timeoutMs;
    while ((await establishedTo(old.host, old.port)) > 0) {
      if (Date.now() >= deadline) return false;
      await sleep(50);
    }
    return true;
  }
}
