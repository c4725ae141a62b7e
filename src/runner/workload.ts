import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { startWorkloadOnPort } from "./egress.js";

/**
 * Starts a workload on a fresh private port (behind its egress proxy when the spec has one). The
 * runtime's start checks the spec itself, so nothing is validated twice (for wasm that would
 * compile the module twice).
 */
export async function startWorkload(
  runtime: Runtime,
  spec: WorkloadSpec,
  user?: WorkloadUser,
): Promise<Workload> {
  // The app's log is the runner's stderr: refusals land next to the workload's own output.
  return startWorkloadOnPort(runtime, spec, user, { log: (line) => process.stderr.write(`${line}\n`) });
}
