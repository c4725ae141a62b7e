import { TabbifyError } from "../core/errors.js";
import type { OptionSpec } from "./flags.js";

export const egressKernelOption: OptionSpec = {
  flag: "egress-kernel",
  env: "SUPERVISOR_EGRESS_KERNEL",
  default: "auto",
  help: "auto (the default: the kernel refuses an egress app's connections around its proxy when this supervisor runs as root with nft, else only the proxy enforces its allow-list, as the app's row and log say) or on (refuse to start without it, and fail an egress app's start rather than run it unconfined)",
};

export type EgressKernelMode = "auto" | "on";

export function egressKernelMode(value: string | undefined): EgressKernelMode {
  if (value === "auto" || value === "on") return value;
  throw new TabbifyError("USAGE", `--egress-kernel wants auto or on, got "${value}"`);
}

/**
 * The supervisor's `--egress-kernel`: `on` is checked before anything starts, so a host that
 * cannot confine app uids is refused at once rather than at each egress app's deploy.
 */
export async function egressKernelFor(
  value: string | undefined,
  runsAppUsers: boolean,
): Promise<EgressKernelMode> {
  const mode = egressKernelMode(value);
  if (mode === "auto") return mode;
  if (!runsAppUsers)
    throw new TabbifyError(
      "NET_ADMIN_REQUIRED",
      "--egress-kernel on: workloads have no app uid of their own for nft to confine; run the supervisor as root",
    );
  const { nftAvailable } = await import("../runner/kernel-hop.js");
  const nft = await nftAvailable();
  if (!nft.ok) throw new TabbifyError("NET_ADMIN_REQUIRED", `--egress-kernel on: ${nft.reason}`);
  return mode;
}
