import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { armEgress, discardArmedEgress, startWorkloadOnPort } from "./egress.js";

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
  return startWorkloadOnPort(runtime, spec, user, { log: appLog });
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
  const booted = spec.egress ? await armEgress(spec, user, { log: appLog }) : spec;
  return runtime.prewarmFor(booted, user);
}

/** Releases what prewarmWorkload booted and no start took. */
export async function discardPrewarmedWorkload(runtime: Runtime): Promise<void> {
  try {
    await runtime.discardPrewarmed?.();
  } finally {
    await discardArmedEgress({ log: appLog });
  }
}

/** The app's log is the runner's stderr: refusals land next to the workload's own output. */
function appLog(line: string): void {
  process.stderr.write(`${line}\n`);
}
