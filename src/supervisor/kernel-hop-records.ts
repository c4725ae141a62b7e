import type { HopElement } from "../runner/kernel-hop.js";
import type { SupervisorContext } from "./context.js";
import { healthOf } from "./proof.js";
import type { RunnerRecord } from "./records.js";

/**
 * The supervisor's records against its kernel-hop table. Runners keep their own element current
 * (swaps, crash restarts); the supervisor removes an app's element when it stops or purges it
 * (its runner may be dead and unable to), and at start replaces the table's elements with those
 * of the runners that prove alive, so a `kill -9` of anything leaves no stale mapping behind the
 * next start.
 */

/** `host:port` or `[v6]:port` as kept in `bound_addr`. */
export function splitBoundAddr(boundAddr: string): { host: string; port: number } {
  const at = boundAddr.lastIndexOf(":");
  const host = boundAddr.slice(0, at).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(boundAddr.slice(at + 1)) };
}

/** The element a living runner's health says it carries, if its hop is in the kernel. */
async function liveElement(record: RunnerRecord): Promise<HopElement | undefined> {
  if (record.stopped || record.pid === null) return undefined;
  const health = await healthOf(record);
  if (health?.hop !== "kernel" || !health.workload_host || !health.workload_port) return undefined;
  const app = splitBoundAddr(record.bound_addr);
  return {
    appHost: app.host,
    appPort: app.port,
    target: { host: health.workload_host, port: health.workload_port },
  };
}

/** After the first reconcile pass: exactly the living runners' mappings, in one transaction. */
export async function reconcileKernelHop(ctx: SupervisorContext): Promise<number> {
  const hop = ctx.opts.kernelHop;
  if (!hop) return 0;
  const elements: HopElement[] = [];
  for (const uuid of await ctx.records.list()) {
    const record = await ctx.records.read(uuid);
    const element = record ? await liveElement(record) : undefined;
    if (element) elements.push(element);
  }
  await hop.reconcile(elements);
  return elements.length;
}

/** Stop and purge: the app's element goes, whether or not its runner could remove it. */
export async function dropKernelHop(ctx: SupervisorContext, record: RunnerRecord): Promise<void> {
  const hop = ctx.opts.kernelHop;
  if (!hop) return;
  const app = splitBoundAddr(record.bound_addr);
  await hop.remove(app.host, app.port).catch((err: unknown) => {
    ctx.opts.logger.warn("could not remove the app's kernel hop", {
      uuid: record.uuid,
      error: (err as Error).message,
    });
  });
}
