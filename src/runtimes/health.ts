/** Health of a workload: does it answer HTTP yet? Used by the runner at start and for swaps. */
import { request } from "node:http";
import { connect } from "node:net";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { Upstream } from "./runtime.js";

export interface HealthOptions {
  timeoutMs: number;
  /** Defaults to `/`. */
  path?: string;
  /** The workload's `exited`: when it settles first, waiting stops at once with the exit status. */
  exited?: Promise<{ code: number | null; signal: string | null }>;
  /**
   * Healthy once the port takes a connection, without a GET: for the wake of an app whose same
   * spec already passed its HTTP check, where the request being held is the first one the app
   * answers (a probe first would cost the app's slowest request, its first, twice).
   */
  listening?: boolean;
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

/** Whether the port takes a TCP connection (closed again at once). */
function listens(upstream: Upstream, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream.host, port: upstream.port, timeout: timeoutMs });
    socket.once("connect", () => {
      socket.destroy();
      resolve({ status: 0 });
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve({ error: `no connection within ${timeoutMs} ms` });
    });
    socket.once("error", (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
  });
}

/**
 * Polls GET `path` until a status below 500 arrives (or, with `listening`, until the port takes a
 * connection). Throws WORKLOAD_UNHEALTHY naming the reason
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
    const wait = Math.max(50, Math.min(2_000, left));
    const result = await (opts.listening ? listens(upstream, wait) : probe(upstream, path, wait));
    if ("status" in result) {
      if (result.status < 500) return { status: result.status, elapsedMs: performance.now() - started };
      last = `GET ${path} answered ${result.status}`;
    } else {
      last = `${opts.listening ? "connect" : `GET ${path}`} failed: ${result.error}`;
    }
    const waited = performance.now() - started;
    const interval = waited < 1_000 ? 5 : waited < 2_000 ? 10 : 100;
    // Without `exited`, race only the sleep: Promise.race with undefined would resolve at once and spin.
    const pause = sleep(Math.min(interval, Math.max(0, deadline - performance.now())));
    await (opts.exited ? Promise.race([pause, opts.exited]) : pause);
  }
}
