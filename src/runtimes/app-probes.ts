import { request } from "node:http";
import { TabbifyError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import type { Upstream } from "./runtime.js";

/**
 * The probes an app declares (`[probes]` in tabbify.toml or manifest.toml), checked on a new
 * workload before it takes any request: `healthz`, then `ready`, then `version`, each a GET on the
 * workload's private port. healthz and ready must answer 2xx (ready is polled until it does, for
 * an app that warms up); version must answer 2xx with a body naming the release being rolled
 * (one of `expect`: its id or digest). Any failure throws, so the runner's swap keeps the old
 * workload serving.
 */

export interface AppProbes {
  healthz?: string;
  ready?: string;
  version?: string;
  /** What the version probe's body must contain one of (the release id, its digest). */
  expect?: string[];
}

const PROBE_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,255}$/;
const MAX_BODY = 64 * 1024;

/** Checks a probes object from an API body; throws `code` naming the first bad member. */
export function parseAppProbes(value: unknown, code = "SPEC_INVALID"): AppProbes | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TabbifyError(code, "probes must be an object {healthz?, ready?, version?, expect?}");
  }
  const raw = value as Record<string, unknown>;
  const unknown = Object.keys(raw).filter((k) => !["healthz", "ready", "version", "expect"].includes(k));
  if (unknown.length > 0) throw new TabbifyError(code, `probes: unknown member(s) ${unknown.join(", ")}`);
  const out: AppProbes = {};
  for (const key of ["healthz", "ready", "version"] as const) {
    const path = raw[key];
    if (path === undefined) continue;
    if (typeof path !== "string" || !PROBE_PATH.test(path)) {
      throw new TabbifyError(code, `probes.${key} must be a path starting with / (at most 256 characters)`);
    }
    out[key] = path;
  }
  if (raw.expect !== undefined) {
    const expect = raw.expect;
    if (
      !Array.isArray(expect) ||
      expect.length === 0 ||
      expect.length > 4 ||
      expect.some((e) => typeof e !== "string" || e.length < 8 || e.length > 200)
    ) {
      throw new TabbifyError(code, "probes.expect must list 1 to 4 strings of 8 to 200 characters");
    }
    out.expect = expect as string[];
  }
  return out.healthz || out.ready || out.version ? out : undefined;
}

type Answer = { status: number; body: string } | { error: string };

function get(upstream: Upstream, path: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request(
      { host: upstream.host, port: upstream.port, path, method: "GET", agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          // Only the first 64 KiB count: a version body is small, and a huge one is not read whole.
          if (size < MAX_BODY) chunks.push(chunk.subarray(0, MAX_BODY - size));
          size += chunk.length;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", (err) => resolve({ error: err.message }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end();
  });
}

const ok = (a: Answer): a is { status: number; body: string } =>
  "status" in a && a.status >= 200 && a.status < 300;
const describe = (a: Answer) => ("status" in a ? `answered ${a.status}` : `failed: ${a.error}`);

/**
 * Runs the declared probes in order against a workload that already answers HTTP. `deadline` is a
 * performance.now() instant: healthz and ready are retried until it (an app may still be warming
 * up); the version probe is asked once they pass.
 */
export async function checkAppProbes(upstream: Upstream, probes: AppProbes, deadline: number): Promise<void> {
  for (const key of ["healthz", "ready"] as const) {
    const path = probes[key];
    if (!path) continue;
    for (;;) {
      const left = deadline - performance.now();
      const answer = await get(upstream, path, Math.max(100, Math.min(2_000, left)));
      if (ok(answer)) break;
      if (performance.now() + 100 >= deadline) {
        throw new TabbifyError("PROBE_FAILED", `probe ${key} (GET ${path}) ${describe(answer)}`, {
          probe: key,
        });
      }
      await sleep(100);
    }
  }
  if (!probes.version) return;
  const answer = await get(
    upstream,
    probes.version,
    Math.max(100, Math.min(5_000, deadline - performance.now())),
  );
  if (!ok(answer)) {
    throw new TabbifyError("PROBE_FAILED", `probe version (GET ${probes.version}) ${describe(answer)}`, {
      probe: "version",
    });
  }
  const expect = probes.expect ?? [];
  if (expect.length > 0 && !expect.some((e) => answer.body.includes(e))) {
    throw new TabbifyError(
      "PROBE_FAILED",
      `probe version (GET ${probes.version}) does not report the release being rolled (${expect.join(" or ")})`,
      { probe: "version" },
    );
  }
}
