/** Picking a runtime by kind, and the capability tags a host advertises. */
import type { RuntimeOptions } from "./child.js";
import { DockerRuntime } from "./docker.js";
import { unknownRuntime } from "./load.js";
import { ProcessRuntime } from "./process.js";
import type { Runtime, RuntimeKind } from "./runtime.js";
import { WasmRuntime } from "./wasm.js";

export type { RuntimeOptions, WorkloadOutput } from "./child.js";
export { adoptContainer } from "./docker.js";
export { type HealthOptions, type Healthy, waitHealthy } from "./health.js";
export { loadRuntime } from "./load.js";
export type { Runtime, RuntimeKind, Upstream, Workload, WorkloadSpec } from "./runtime.js";
export { runtimeKinds } from "./runtime.js";

export function runtimeFor(kind: RuntimeKind, options: RuntimeOptions = {}): Runtime {
  switch (kind) {
    case "process":
      return new ProcessRuntime(options);
    case "docker":
      return new DockerRuntime(options);
    case "wasm":
      return new WasmRuntime(options);
    default:
      throw unknownRuntime(kind);
  }
}

/** The runtimes this host can run right now, in a fixed order: process, wasm, then docker if its daemon answers. */
export async function availableRuntimeKinds(): Promise<RuntimeKind[]> {
  const kinds: RuntimeKind[] = [];
  for (const kind of ["process", "wasm", "docker"] as const) {
    if (await runtimeFor(kind).available()) kinds.push(kind);
  }
  return kinds;
}
