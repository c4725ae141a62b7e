/**
 * Loading one runtime by kind, and only its module: the runner starts its first workload before
 * it loads anything else, so it must not pay for docker's CLI plumbing to run a process.
 */
import { TabbifyError } from "../core/errors.js";
import type { RuntimeOptions } from "./child.js";
import { type Runtime, type RuntimeKind, runtimeKinds } from "./runtime.js";

export function unknownRuntime(kind: unknown): TabbifyError {
  return new TabbifyError(
    "RUNTIME_UNKNOWN",
    `unknown runtime "${String(kind).slice(0, 40)}" (known: ${runtimeKinds.join(", ")})`,
  );
}

export async function loadRuntime(kind: RuntimeKind, options: RuntimeOptions = {}): Promise<Runtime> {
  switch (kind) {
    case "process":
      return new (await import("./process.js")).ProcessRuntime(options);
    case "wasm":
      return new (await import("./wasm.js")).WasmRuntime(options);
    case "docker":
      return new (await import("./docker.js")).DockerRuntime(options);
    default:
      throw unknownRuntime(kind);
  }
}
