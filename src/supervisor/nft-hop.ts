import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { TabbifyError } from "../core/errors.js";

const execFileAsync = promisify(execFile);

/** One app's kernel hop: `<address>:<appPort>` → `127.0.0.1:<port>` (its workload). */
export interface NftRoute {
  /** The app's IPv4 address (a loopback twin in `local` mesh mode). */
  address: string;
  /** The workload's private port on 127.0.0.1. */
  port: number;
}

export interface NftHopOptions {
  /** nftables table name; one per supervisor (letters, digits, `_`). */
  table: string;
  appPort: number;
  binary?: string;
}

/**
 * The runner's hop in the kernel: one nftables table owned by the supervisor, holding a DNAT rule
 * per app in a `nat` `output` chain (locally generated traffic) and a `prerouting` chain
 * (forwarded traffic). Every change rewrites the whole table in one `nft -f` transaction, so a
 * swap moves an app from its old workload's port to the new one atomically; connections already
 * established keep their conntrack mapping and finish on the old workload. Applying the
 * supervisor's records at start reconciles away rules a killed supervisor left behind.
 */
export class NftHop {
  private readonly opts: NftHopOptions;
  private readonly binary: string;
  private readonly routes = new Map<string, NftRoute>();

  constructor(opts: NftHopOptions) {
    if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(opts.table)) {
      throw new TabbifyError("USAGE", `nftables table name "${opts.table}" must be a short identifier`);
    }
    this.opts = opts;
    this.binary = opts.binary ?? "nft";
  }

  /** Whether `nft` runs and may change the ruleset here (CAP_NET_ADMIN). */
  static async available(binary = "nft"): Promise<{ ok: boolean; reason?: string }> {
    try {
      await execFileAsync(binary, ["list", "tables"]);
      return { ok: true };
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      return {
        ok: false,
        reason: e.code === "ENOENT" ? "nft is not installed" : String(e.stderr ?? e.message).trim(),
      };
    }
  }

  /** Replaces the table with exactly these routes (keyed by app uuid): the start-up reconcile. */
  async reconcile(routes: ReadonlyMap<string, NftRoute>): Promise<void> {
    this.routes.clear();
    for (const [uuid, route] of routes) this.routes.set(uuid, route);
    await this.apply();
  }

  /** Points an app at a workload port: its first start, or a swap once the new one is healthy. */
  async set(uuid: string, route: NftRoute): Promise<void> {
    this.routes.set(uuid, route);
    await this.apply();
  }

  /** Removes an app's rule (stop, purge). */
  async remove(uuid: string): Promise<void> {
    if (!this.routes.delete(uuid)) return;
    await this.apply();
  }

  /** Deletes the whole table. */
  async destroy(): Promise<void> {
    this.routes.clear();
    await this.run(`table ip ${this.opts.table}\ndelete table ip ${this.opts.table}\n`);
  }

  /** The ruleset text one transaction applies; exported for tests and logs. */
  render(): string {
    const t = this.opts.table;
    const rules = [...this.routes.values()]
      .map(
        (r) =>
          `    ip daddr ${ipv4(r.address)} tcp dport ${this.opts.appPort} dnat to 127.0.0.1:${port(r.port)}`,
      )
      .join("\n");
    const chain = (name: string, hook: string) =>
      `  chain ${name} {\n    type nat hook ${hook} priority -100; policy accept;\n${rules}\n  }`;
    // `table` first creates it if missing, so `flush` never fails; all of it is one transaction.
    return `table ip ${t}\nflush table ip ${t}\ntable ip ${t} {\n${chain("output", "output")}\n${chain("prerouting", "prerouting")}\n}\n`;
  }

  private apply(): Promise<void> {
    return this.run(this.render());
  }

  private run(text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, ["-f", "-"], { stdio: ["pipe", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
      child.on("error", reject);
      child.on("exit", (code) => {
        if (code === 0) resolve();
        else
          reject(
            new TabbifyError("NFT_FAILED", `nft -f refused the hop table: ${stderr.trim().slice(0, 500)}`),
          );
      });
      child.stdin.end(text);
    });
  }
}

function ipv4(address: string): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
    throw new TabbifyError("USAGE", `the kernel hop takes IPv4 app addresses, got "${address}"`);
  }
  return address;
}

function port(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new TabbifyError("USAGE", `bad workload port ${value}`);
  }
  return value;
}
