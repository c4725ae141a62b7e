import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { TabbifyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { hasNetAdmin } from "../supervisor/host.js";
import { NftHop } from "../supervisor/nft-hop.js";
import type { OptionSpec } from "./flags.js";

export const kernelHopOption: OptionSpec = {
  flag: "kernel-hop",
  env: "SUPERVISOR_KERNEL_HOP",
  default: "auto",
  help: "auto (the default: nftables DNAT from each app address to its workload when this process has CAP_NET_ADMIN and nft and the mesh is local, else the runner's userspace hop), on (refuse to start without it) or off (always the userspace hop)",
};

/** One table per data dir, so two supervisors on a host never touch each other's mappings. */
export function kernelHopTable(dataDir: string): string {
  return `tabbify_${createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16)}`;
}

/**
 * `--kernel-hop`: the table ready for runners (created if missing, elements left for the
 * supervisor's reconcile), or undefined for the userspace hop.
 */
export async function kernelHopFor(
  mode: string | undefined,
  dataDir: string,
  logger: Logger,
  mesh: "local" | "ula" = "local",
): Promise<NftHop | undefined> {
  if (mode !== "auto" && mode !== "on" && mode !== "off") {
    throw new TabbifyError("USAGE", `--kernel-hop wants auto, on or off, got "${mode}"`);
  }
  if (mode === "off") return undefined;
  if (mode === "auto" && mesh === "ula") {
    // ULA app addresses need IPv6 workloads (no NAT46); today's runtimes listen on 127.0.0.1.
    logger.info("kernel hop off; runners carry app traffic in userspace", {
      reason: "ULA app addresses need IPv6 workloads, and workloads listen on 127.0.0.1",
    });
    return undefined;
  }
  const why = !(await hasNetAdmin())
    ? "this process lacks CAP_NET_ADMIN"
    : await NftHop.available().then((a) => (a.ok ? undefined : a.reason));
  if (why) {
    if (mode === "on") throw new TabbifyError("NET_ADMIN_REQUIRED", `--kernel-hop on: ${why}`);
    logger.info("kernel hop off; runners carry app traffic in userspace", { reason: why });
    return undefined;
  }
  const hop = new NftHop({ table: kernelHopTable(dataDir) });
  try {
    await hop.ensure();
  } catch (err) {
    if (mode === "on") throw err;
    logger.warn("kernel hop off: the nftables table could not be made", { reason: (err as Error).message });
    return undefined;
  }
  logger.info("kernel hop on: nftables carries app traffic to workloads", { table: hop.table });
  return hop;
}
