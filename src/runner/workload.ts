import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { armEgress, discardArmedEgress, type EgressWorkloadOptions, startWorkloadOnPort } from "./egress.js";

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
  return startWorkloadOnPort(runtime, spec, user, egressOptions);
}

/**
 * Boots a sleeping app's next workload ahead where the runtime can (see Runtime.prewarmFor); an
 * egress app's gateway opens first, so the booted workload already has its proxy and its uid is
 * confined before any of its code runs.
 */
export async function prewarmWorkload(
  runtime: Runtime,
  spec: WorkloadSpec,
  user?: WorkloadUser,
): Promise<void> {
  if (!runtime.prewarmFor) return runtime.prewarm?.();
  const booted = spec.egress ? await armEgress(spec, user, egressOptions) : spec;
  return runtime.prewarmFor(booted, user);
}

/** Releases what prewarmWorkload booted and no start took. */
export async function discardPrewarmedWorkload(runtime: Runtime): Promise<void> {
  try {
    await runtime.discardPrewarmed?.();
  } finally {
    await discardArmedEgress(egressOptions);
  }
}

/** The app's log is the runner's stderr: refusals land next to the workload's own output. */
function appLog(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A runner runs one app, so its egress options are the process's, set once by its main. */
let egressOptions: EgressWorkloadOptions = { log: appLog };

/**
 * `tabbify runner --egress-kernel on`: an egress workload whose uid the kernel cannot confine to
 * its proxy fails to start instead of running with only the proxy enforcing its allow-list.
 */
export function requireEgressKernel(): void {
  egressOptions = { ...egressOptions, requireKernel: true };
}
