import { freeLoopbackPort } from "../core/net.js";
import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";

/**
 * Starts a workload on a fresh private port. The runtime's start checks the spec itself, so
 * nothing is validated twice (for wasm that would compile the module twice).
 */
export async function startWorkload(
  runtime: Runtime,
  spec: WorkloadSpec,
  user?: WorkloadUser,
): Promise<Workload> {
  return runtime.start(spec, await freeLoopbackPort(), user);
}
