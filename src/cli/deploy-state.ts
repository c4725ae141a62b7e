import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isErrno } from "../core/errors.js";

/**
 * `.tabbify/deploy-state.json`: per service, what the last deploy bound to (the node, tenant
 * scope, region, plan) and which env names it managed. A change of any of them is drift.
 */

export interface ServiceState {
  node: string;
  /** The tenant the token acts for (`admin` for the node key). */
  scope: string;
  region: string;
  /** The workload plan (`process`: a handler host on a process supervisor). */
  plan: string;
  /** The review plan the last deploy went through, if any (not drift: each review has its own). */
  reviewPlanId: string | null;
  appUuid: string;
  managedEnv: string[];
  contractSha: string;
  deployedAt: string;
}

export interface DeployState {
  version: 1;
  services: Record<string, ServiceState>;
  /** Review plans waiting for approval, per service: re-running deploy with the same contract uses them. */
  pendingPlans?: Record<string, { id: string; proposedSha: string }>;
}

export const STATE_FILE = join(".tabbify", "deploy-state.json");

export async function readDeployState(dir: string): Promise<DeployState> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, STATE_FILE), "utf8")) as DeployState;
    if (parsed && typeof parsed.services === "object") return parsed;
  } catch (err) {
    if (!isErrno(err, "ENOENT") && !(err instanceof SyntaxError)) throw err;
  }
  return { version: 1, services: {} };
}

export async function writeDeployState(dir: string, state: DeployState): Promise<void> {
  const file = join(dir, STATE_FILE);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  await rename(`${file}.tmp`, file);
}

/** Why the saved state and this deploy disagree (empty: no drift). */
export function driftOf(
  saved: ServiceState | undefined,
  next: { scope: string; region: string; plan: string; managedEnv: string[]; node: string },
): string[] {
  if (!saved) return [];
  const out: string[] = [];
  if (saved.node !== next.node) out.push(`node changed: ${saved.node} -> ${next.node}`);
  if (saved.scope !== next.scope) out.push(`scope changed: ${saved.scope} -> ${next.scope}`);
  if (saved.region !== next.region) out.push(`region changed: ${saved.region} -> ${next.region}`);
  if (saved.plan !== next.plan) out.push(`plan changed: ${saved.plan} -> ${next.plan}`);
  const now = new Set(next.managedEnv);
  for (const name of saved.managedEnv) if (!now.has(name)) out.push(`managed env ${name} is gone`);
  return out;
}
