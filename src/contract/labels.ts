import type { Contract } from "./types.js";
import { routeLabel } from "./verdict.js";

/**
 * The contract as `dev.tabbify.contract.*` labels (OCI annotation style: flat strings), carried by
 * a handler app's artifact (`contract-labels.json` next to the bundle) and its session status.
 */
export function contractLabels(contract: Contract, sha: string): Record<string, string> {
  const list = (xs: string[], dynamic = false) => (dynamic ? "*" : xs.join(","));
  const proven = Object.entries(contract.properties)
    .filter(([, v]) => v === true)
    .map(([k]) => k)
    .sort();
  return {
    "dev.tabbify.contract.sha": sha,
    "dev.tabbify.contract.proof-level": contract.proofLevel,
    "dev.tabbify.contract.env": list(contract.env.literal, contract.env.dynamic),
    "dev.tabbify.contract.egress": list(contract.egress.hosts, contract.egress.dynamic),
    "dev.tabbify.contract.routes": list(contract.routes.map(routeLabel), contract.routesDynamic),
    "dev.tabbify.contract.cache": list(contract.cache.namespaces, contract.cache.dynamic),
    "dev.tabbify.contract.properties": proven.join(","),
  };
}
