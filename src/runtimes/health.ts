/** Health of a workload: does it answer HTTP yet? Used by the runner at start and for swaps. */
import { request } from "node:http";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { Upstream } from "./runtime.js";

export interface HealthOptions {
  timeoutMs: number;
  /** Defaults to `/`. */
  path?: string;
  /** The workload's `exited`: when it settles first, waiting stops at once with the exit status. */
  exited?: Promise<{ code: number | null; signal: string | null }>;
}

export interface Healthy {
  status: number;
  /** Time from the call to the first healthy answer. */
  elapsedMs: number;
}

type Probe = { status: number } | { error: string };

function probe(upstream: Upstream, path: string, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const req = request(
      { host: upstream.host, port: upstream.port, path, method: "GET", agent: false, timeout: timeoutMs },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0 });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end();
  });
}

/**
 * Polls GET `path` until a status below 500 arrives. Throws WORKLOAD_UNHEALTHY naming the reason
 * (the workload exited, or the last error or status seen when time ran out).
 */
export async function waitHealthy(upstream: Upstream, opts: HealthOptions): Promise<Healthy> {
  const started = performance.now();
  const deadline = started + opts.timeoutMs;
  const path = opts.path ?? "/";
  let exit: { code: number | null; signal: string | null } | undefined;
  opts.exited?.then((e) => {
    exit = e;
  });
  let last = "no answer yet";
  // A refused connection costs next to nothing, so the first seconds poll tightly (cold start is
  // measured through this loop); after that a slow app is not hammered.
  for (;;) {
    if (exit) {
      throw new TabbifyError(
        "WORKLOAD_UNHEALTHY",
        `workload exited before it was healthy (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`})`,
        { exit },
      );
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new TabbifyError(
        "WORKLOAD_UNHEALTHY",
        `workload at ${upstream.host}:${upstream.port} not healthy within ${opts.timeoutMs} ms: ${last}`,
      );
    }
    const result = await probe(upstream, path, Math.max(50, Math.min(2_000, left)));
    if ("status" in result) {
      if (result.status < 500) return { status: result.status, elapsedMs: performance.now() - started };
      last = `GET ${path} answered ${result.status}`;
    } else {
      last = `GET ${path} failed: ${result.error}`;
    }
    const waited = performance.now() - started;
    const interval = waited < 1_000 ? 5 : waited < 2_000 ? 10 : 100;
    // Without `exited`, race only the sleep: Promise.race with undefined would resolve at once and spin.
    const pause = sleep(Math.min(interval, Math.max(0, deadline - performance.now())));
    await (opts.exited ? Promise.race([pause, opts.exited]) : pause);
  }
}
