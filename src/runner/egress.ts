import { type EgressProxy, startEgressProxy } from "../contract/egress-proxy.js";
import { freeLoopbackPort } from "../core/net.js";
import type { Runtime, Workload, WorkloadSpec, WorkloadUser } from "../runtimes/runtime.js";
import { confineEgress, releasePorts } from "./egress-nft.js";

/**
 * A workload whose spec carries `egress.allow` (a handler app's contract hosts) starts behind its
 * own egress proxy, owned by the runner: the workload gets `HTTP_PROXY`/`HTTPS_PROXY` (and
 * `NO_PROXY` for loopback) and nothing else of it. When the workload runs as an app uid and nft
 * can change the ruleset (the supervisor runs as root), the kernel refuses the uid's connections
 * anywhere but the proxy and its own listener before the workload's first instruction runs
 * (egress-nft.ts). Where it cannot, the proxy still answers but direct connections are not
 * blocked; the runner says so in the app's log, once per workload.
 */

export interface EgressWorkloadOptions {
  /** Where refusals and the enforcement notice go: the app's log. */
  log: (line: string) => void;
  nftBinary?: string;
}

/** What the workload's env gets on top of its own (the proxy's URL in the usual names). */
export function proxyEnv(proxyUrl: string): Record<string, string> {
  const noProxy = "localhost,127.0.0.1,::1";
  return {
    HTTP_PROXY: proxyUrl,
    HTTPS_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    TABBIFY_EGRESS_PROXY: proxyUrl,
  };
}

export async function startWithEgress(
  runtime: Runtime,
  spec: WorkloadSpec,
  port: number,
  user: WorkloadUser | undefined,
  opts: EgressWorkloadOptions,
): Promise<Workload> {
  const allow = spec.egress?.allow ?? [];
  const proxy: EgressProxy = await startEgressProxy({ allow, log: opts.log });
  const ports = [proxy.port, port];
  let confined = false;
  const release = async () => {
    await proxy.close();
    if (confined && user) await releasePorts(user.uid, ports, opts.nftBinary).catch(() => {});
  };
  try {
    if (user) {
      try {
        await confineEgress(user.uid, ports, opts.nftBinary);
        confined = true;
      } catch (err) {
        opts.log(
          `tabbify egress: direct connections are NOT blocked (${(err as Error).message}); only the proxy enforces the contract`,
        );
      }
    } else {
      opts.log(
        "tabbify egress: direct connections are NOT blocked (the workload has no app uid: the supervisor is not root); only the proxy enforces the contract",
      );
    }
    const workload = await runtime.start(
      { ...spec, env: { ...spec.env, ...proxyEnv(proxy.url) } },
      port,
      user,
    );
    // Released when the workload ends, and stop() waits for it, so nothing outlives the runner's stop.
    const released = workload.exited.then(release, release);
    return {
      get pid() {
        return workload.pid;
      },
      get upstream() {
        return workload.upstream;
      },
      get version() {
        return workload.version;
      },
      exited: workload.exited,
      stop: async (graceMs?: number) => {
        await workload.stop(graceMs);
        await released;
      },
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/** The runtime's start, behind an egress proxy when the spec asks for one. */
export async function startWorkloadOnPort(
  runtime: Runtime,
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
  opts: EgressWorkloadOptions,
): Promise<Workload> {
  const port = await freeLoopbackPort();
  return spec.egress ? startWithEgress(runtime, spec, port, user, opts) : runtime.start(spec, port, user);
}
