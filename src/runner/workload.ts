import net from "node:net";
import type { Runtime, Workload, WorkloadSpec } from "../runtimes/runtime.js";

/** A free TCP port on 127.0.0.1 for a workload's private listener. */
export function pickPrivatePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once("error", reject);
    probe.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const port = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts a workload on a fresh private port. The runtime's start checks the spec itself, so
 * nothing is validated twice (for wasm that would compile the module twice).
 */
export async function startWorkload(runtime: Runtime, spec: WorkloadSpec): Promise<Workload> {
  return runtime.start(spec, await pickPrivatePort());
}
