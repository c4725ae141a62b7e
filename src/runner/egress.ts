import { type EgressProxy, startEgressProxy } from "../contract/egress-proxy.js";
import { TabbifyError } from "../core/errors.js";
import { freeLoopbackPort } from "../core/net.js";
import type {
  EgressEnforcement,
  Runtime,
  Workload,
  WorkloadSpec,
  WorkloadUser,
} from "../runtimes/runtime.js";
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
  /** Refuse (EGRESS_UNCONFINED) rather than run a workload only the proxy holds to its allow-list. */
  requireKernel?: boolean;
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

/** An egress proxy with its uid confined to it: one workload's way out. */
interface Gateway {
  /** Which specs it serves: the allow list and the uid. */
  key: string;
  proxy: EgressProxy;
  user: WorkloadUser | undefined;
  /** Ports let through the uid's kernel set so far (the proxy's, then the workload's). */
  ports: number[];
  confined: boolean;
  /** Why the uid is not confined, when it is not. */
  notConfined?: string;
  /** A port being added to the set; closing waits for it, so no port outlives the gateway. */
  adding?: Promise<void>;
  /** For a gateway armed ahead: the spec it was armed for, and that spec behind its proxy. */
  armedFor?: { spec: WorkloadSpec; behind: WorkloadSpec };
}

const gatewayKey = (spec: WorkloadSpec, user: WorkloadUser | undefined) =>
  JSON.stringify([spec.egress?.allow ?? [], user?.uid ?? null]);

/** The spec as the workload behind `proxy` runs it: the proxy's URL in its environment. */
const behind = (spec: WorkloadSpec, proxy: EgressProxy): WorkloadSpec => ({
  ...spec,
  env: { ...spec.env, ...proxyEnv(proxy.url) },
});

/** Starts the proxy and confines the uid to it (and to `ports`), saying so when it cannot. */
async function openGateway(
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
  ports: number[],
  opts: EgressWorkloadOptions,
): Promise<Gateway> {
  const proxy = await startEgressProxy({ allow: spec.egress?.allow ?? [], log: opts.log });
  const gateway: Gateway = {
    key: gatewayKey(spec, user),
    proxy,
    user,
    ports: [proxy.port, ...ports],
    confined: false,
  };
  if (user) {
    try {
      await confineEgress(user.uid, gateway.ports, opts.nftBinary);
      gateway.confined = true;
    } catch (err) {
      // nft's first line names the failure; the rest echoes the script.
      const why = (err as Error).message.split("\n")[0]?.slice(0, 200);
      gateway.notConfined = `nft could not confine the app's uid: ${why}`;
    }
  } else {
    gateway.notConfined = "the workload has no app uid: the supervisor is not root";
  }
  if (gateway.notConfined && opts.requireKernel) {
    await proxy.close();
    throw new TabbifyError(
      "EGRESS_UNCONFINED",
      `egress kernel enforcement is required (--egress-kernel on), but ${gateway.notConfined}; the app does not start with only its proxy holding it to its allow-list`,
    );
  }
  if (gateway.notConfined)
    opts.log(
      `tabbify egress: direct connections are NOT blocked (${gateway.notConfined}); only the proxy enforces the contract`,
    );
  return gateway;
}

function enforcementOf(gateway: Gateway): EgressEnforcement {
  return gateway.confined
    ? { enforced_by: "proxy+kernel" }
    : { enforced_by: "proxy", ...(gateway.notConfined ? { reason: gateway.notConfined } : {}) };
}

/**
 * Lets the uid also reach its workload's own listener, off the start's path: an `nft -f` costs
 * a few hundred ms here, which a wake must not wait for, and until it lands the app only cannot
 * connect to itself. A failure is told in the app's log.
 */
function allowOwnPort(gateway: Gateway, port: number, opts: EgressWorkloadOptions): void {
  if (gateway.ports.includes(port)) return;
  gateway.ports.push(port);
  const user = gateway.user;
  if (!gateway.confined || !user) return;
  gateway.adding = (gateway.adding ?? Promise.resolve())
    .then(() => confineEgress(user.uid, [port], opts.nftBinary))
    .catch((err: Error) =>
      opts.log(`tabbify egress: the workload cannot reach its own port: ${err.message}`),
    );
}

async function closeGateway(gateway: Gateway, opts: EgressWorkloadOptions): Promise<void> {
  await gateway.adding;
  await gateway.proxy.close();
  if (gateway.confined && gateway.user)
    await releasePorts(gateway.user.uid, gateway.ports, opts.nftBinary).catch(() => {});
}

/**
 * The gateway opened ahead for a sleeping app's next workload (see armEgress): the runner runs
 * one app, so there is at most one.
 */
let armed: Gateway | undefined;

/**
 * For a sleeping egress app: opens the gateway its next workload will use now, and returns the
 * spec to boot that workload ahead with (the process runtime's gate: none of the app's code runs
 * before the wake, and the uid is confined before it does). The wake's start takes both, so it
 * skips Node's boot as an app without egress does.
 */
export async function armEgress(
  spec: WorkloadSpec,
  user: WorkloadUser | undefined,
  opts: EgressWorkloadOptions,
): Promise<WorkloadSpec> {
  if (armed?.key !== gatewayKey(spec, user)) {
    await discardArmedEgress(opts);
    armed = await openGateway(spec, user, [], opts);
  }
  armed.armedFor = { spec, behind: behind(spec, armed.proxy) };
  return armed.armedFor.behind;
}

/** Closes the gateway armed for a wake that will not come (the runner stops). */
export async function discardArmedEgress(opts: EgressWorkloadOptions): Promise<void> {
  const gateway = armed;
  armed = undefined;
  if (gateway) await closeGateway(gateway, opts);
}

export async function startWithEgress(
  runtime: Runtime,
  spec: WorkloadSpec,
  port: number,
  user: WorkloadUser | undefined,
  opts: EgressWorkloadOptions,
): Promise<Workload> {
  // The gateway armed for this spec while the app slept, or a new one.
  let gateway: Gateway;
  if (armed?.key === gatewayKey(spec, user)) {
    gateway = armed;
    armed = undefined;
  } else {
    await discardArmedEgress(opts);
    gateway = await openGateway(spec, user, [port], opts);
  }
  const release = () => closeGateway(gateway, opts);
  try {
    // The very spec object the workload was booted ahead with, when the wake brings the spec it
    // was armed for: the runtime then takes its booted workload without checking it again.
    const specBehind =
      gateway.armedFor?.spec === spec ? gateway.armedFor.behind : behind(spec, gateway.proxy);
    const workload = await runtime.start(specBehind, port, user);
    // A workload booted ahead listens on the port it was booted with.
    allowOwnPort(gateway, workload.upstream.port, opts);
    // Released when the workload ends, and stop() waits for it, so nothing outlives the runner's stop.
    const released = workload.exited.then(release, release);
    const wrapped: Workload = {
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
      egress: enforcementOf(gateway),
    };
    // The kernel hop's graceful swap and the `cpu` limit reason read these: keep them.
    if (workload.drain) wrapped.drain = () => workload.drain?.();
    if (workload.cpuThrottled)
      wrapped.cpuThrottled = () => workload.cpuThrottled?.() ?? Promise.resolve(false);
    return wrapped;
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
