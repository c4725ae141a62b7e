import { TabbifyError } from "../core/errors.js";
import {
  checkTableName,
  type HopElement,
  mapName,
  nftApply,
  nftAvailable,
  pointScript,
  removeScript,
} from "../runner/kernel-hop.js";

export interface NftHopOptions {
  /** nftables table name; one per supervisor (letters, digits, `_`). */
  table: string;
  binary?: string;
}

/**
 * The supervisor's side of the kernel hop (the runner's side is runner/kernel-hop.ts): it owns the
 * `inet` table, creates its maps and chains, and at start reconciles the maps with its records
 * so a `kill -9` leaves no stale mapping behind the next start. Runners change their own element
 * (swaps, crash restarts) without the supervisor, which they never depend on.
 */
export class NftHop {
  readonly table: string;
  private readonly binary: string;

  constructor(opts: NftHopOptions) {
    this.table = checkTableName(opts.table);
    this.binary = opts.binary ?? "nft";
  }

  /** Whether `nft` runs and may change the ruleset here (CAP_NET_ADMIN). */
  static available(binary = "nft"): Promise<{ ok: boolean; reason?: string }> {
    return nftAvailable(binary);
  }

  /** Creates the table, its maps and chains if missing; elements already there stay. */
  ensure(): Promise<void> {
    return this.run(this.skeleton());
  }

  /**
   * The table with exactly these mappings: deleted and made again in one transaction (atomic, so
   * no connection ever finds it missing). The start-up reconcile.
   */
  reconcile(elements: readonly HopElement[]): Promise<void> {
    const t = this.table;
    let script = `add table inet ${t}\ndelete table inet ${t}\n${this.skeleton()}`;
    for (const e of elements) script += pointScript(t, e);
    return this.run(script);
  }

  /** Points one app at a workload (tests; runners do this themselves). */
  set(e: HopElement): Promise<void> {
    return this.run(pointScript(this.table, e));
  }

  /** Removes an app's mapping and chain (stop, purge); absent is fine. */
  remove(appHost: string, appPort: number): Promise<void> {
    return this.run(removeScript(this.table, appHost, appPort));
  }

  /** Deletes the whole table. */
  destroy(): Promise<void> {
    return this.run(`table inet ${this.table}\ndelete table inet ${this.table}\n`);
  }

  /**
   * The table, its two verdict maps and its two NAT chains. `add` creates what is missing and
   * leaves what exists (app chains and map elements stay); the hook chains are flushed and
   * refilled so their rules are always these two.
   */
  private skeleton(): string {
    const t = this.table;
    const map = (family: 4 | 6) =>
      `add map inet ${t} ${mapName(family)} { type ipv${family}_addr . inet_service : verdict; }\n`;
    const chain = (name: string, hook: string) =>
      `add chain inet ${t} ${name} { type nat hook ${hook} priority -100; policy accept; }\n` +
      `flush chain inet ${t} ${name}\n` +
      `add rule inet ${t} ${name} ip daddr . tcp dport vmap @${mapName(4)}\n` +
      `add rule inet ${t} ${name} ip6 daddr . tcp dport vmap @${mapName(6)}\n`;
    return `add table inet ${t}\n${map(4)}${map(6)}${chain("output", "output")}${chain("prerouting", "prerouting")}`;
  }

  private run(script: string): Promise<void> {
    return nftApply(script, this.binary).catch((err: unknown) => {
      throw new TabbifyError(
        "NFT_FAILED",
        (err as Error).message.replace("the change", `table ${this.table}`),
      );
    });
  }
}
