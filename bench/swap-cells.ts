/**
 * Zero-downtime swaps under load, per data plane and per runner hop (the issue 15 §3 check), for
 * `npm run bench:swaps` and the swap section of `npm run bench:runtime`. For each plane (`BENCH_PLANES`, default node,nginx,haproxy,caddy) and hop
 * (`BENCH_HOPS`, default userspace,kernel; kernel needs root and nft) it starts a real `tabbify
 * node --data-plane <plane>` and `tabbify supervisor --kernel-hop off|on` whose runner registers
 * on the node's roster, then runs wrk -t1 -c64 through `/app/<uuid>/`:
 *  - at rest, for the anchor: the same setup with no swap;
 *  - while 10 swaps (`BENCH_SWAPS`) happen one after the other.
 * It prints failed requests (socket errors + non-2xx; must be 0), req/s and p99 in both, and the
 * ratios to the at-rest anchor measured in the same run. It never asserts timings.
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freeLoopbackPort } from "../src/core/net.js";
import { sleep } from "../src/core/sleep.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tabbify = join(repoRoot, "dist", "src", "main", "tabbify.js");
const versionApp = join(repoRoot, "test", "fixtures", "version-app");
const swaps = Number(process.env.BENCH_SWAPS ?? 10);
const restSecs = Number(process.env.BENCH_SWAP_REST_SECS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);

interface Result {
  rps: number;
  p99Ms: number;
  requests: number;
  failed: number;
  /** Of `failed`: wrk's own 2 s timeouts (a slow answer on a loaded machine, not a dropped one). */
  timeouts: number;
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

/** wrk for `secs`; `during` runs alongside and wrk is stopped (SIGINT) once it ends, if given. */
function wrk(url: string, secs: number, during?: () => Promise<void>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "wrk",
      ["-t1", `-c${connections}`, `-d${secs}s`, "--latency", url],
      { maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err && !stdout) return reject(err);
        const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
        const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
        resolve({
          rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]),
          p99Ms: toMs(/^\s*99%\s+(\S+)/m.exec(stdout)?.[1] ?? ""),
          requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0),
          failed: non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
          timeouts: Number(sockErr?.[4] ?? 0),
        });
      },
    );
    if (during) {
      // wrk prints its summary on SIGINT too.
      void during().then(
        () => child.kill("SIGINT"),
        (err: unknown) => {
          child.kill("SIGINT");
          reject(err);
        },
      );
    }
  });
}

function startChild(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; log: () => string } {
  let log = "";
  const child = spawn(process.execPath, [tabbify, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d) => {
    if (log.length < 20_000) log += d;
  });
  child.stderr?.on("data", (d) => {
    if (log.length < 20_000) log += d;
  });
  return { child, log: () => log };
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 5_000).unref();
  });
}

/** Runners and workloads outlive their supervisor: end the ones this setup's records name. */
function killRecorded(runnersDir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(runnersDir).filter((n) => n.endsWith(".json"));
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const record = JSON.parse(readFileSync(join(runnersDir, name), "utf8")) as {
        pid: number | null;
        workload_pid: number | null;
      };
      for (const pid of [record.pid, record.workload_pid]) {
        if (pid) {
          try {
            process.kill(-pid, "SIGKILL");
          } catch {
            // gone already
          }
        }
      }
    } catch {
      // a record mid-rewrite
    }
  }
}

export interface SwapRow {
  plane: string;
  hop: string;
  rest: Result;
  swapping: Result;
  swapMs: number[];
}

export async function measureSwaps(plane: string, hop: string): Promise<SwapRow> {
  const dir = mkdtempSync(join(tmpdir(), "tbf-bench-swaps-"));
  const nodeKey = randomBytes(24).toString("base64url");
  const supKey = randomBytes(24).toString("base64url");
  writeFileSync(join(dir, "sup.key"), `${supKey}\n`, { mode: 0o600 });
  const nodePort = await freeLoopbackPort();
  const supPort = await freeLoopbackPort();
  const nodeUrl = `http://127.0.0.1:${nodePort}`;
  const node = startChild(
    ["node", "--listen", `127.0.0.1:${nodePort}`, "--data", join(dir, "node"), "--data-plane", plane],
    { TABBIFY_NODE_KEY: nodeKey },
  );
  const sup = startChild(
    [
      "supervisor",
      "--data",
      join(dir, "sup"),
      "--listen",
      `127.0.0.1:${supPort}`,
      "--node",
      nodeUrl,
      "--warm-spares",
      "0",
      "--api-key-file",
      join(dir, "sup.key"),
      "--kernel-hop",
      hop === "kernel" ? "on" : "off",
    ],
    { TABBIFY_NODE_KEY: nodeKey },
  );
  const api = async (path: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${supPort}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${supKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const spec = (version: number) => ({
    runtime: "process",
    artifact_dir: versionApp,
    command: ["node", "server.mjs"],
    env: { VERSION: String(version) },
  });
  let uuid = "";
  try {
    await until("the node", async () => (await fetch(`${nodeUrl}/health`)).ok);
    await until("the supervisor", async () => (await fetch(`http://127.0.0.1:${supPort}/health`)).ok);
    uuid = randomUUID();
    await api(`/v1/apps/${uuid}/start`, spec(0));
    const url = `${nodeUrl}/app/${uuid}/`;
    // The runner's first heartbeat puts the app on the roster and in the engine's config.
    await until("the app through the node", async () => {
      const res = await fetch(url);
      await res.body?.cancel();
      return res.ok;
    });
    await sleep(1_500);
    await wrk(url, 1);
    const rest = await wrk(url, restSecs);
    const swapMs: number[] = [];
    const swapping = await wrk(url, 600, async () => {
      await sleep(500);
      for (let i = 1; i <= swaps; i++) {
        const t0 = performance.now();
        await api(`/v1/apps/${uuid}/deploy`, spec(i));
        swapMs.push(performance.now() - t0);
      }
      await sleep(500);
    });
    return { plane, hop, rest, swapping, swapMs };
  } catch (err) {
    throw new Error(
      `${plane}/${hop}: ${(err as Error).message}\n${sup.log().slice(-2000)}\n${node.log().slice(-2000)}`,
    );
  } finally {
    if (uuid) await api(`/v1/apps/${uuid}/purge`, undefined).catch(() => {});
    await stopChild(sup.child);
    await stopChild(node.child);
    killRecorded(join(dir, "sup", "runners"));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The markdown table of swap cells: failed requests, req/s and p99 swapping vs at rest. */
export function swapTable(rows: SwapRow[]): string {
  let out =
    "| data plane | runner hop | failed during swaps (of which wrk timeouts) | req/s at rest | req/s swapping (× rest) | p99 at rest | p99 swapping (× rest) | swap ms (median) |\n" +
    "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const r of rows) {
    const median = [...r.swapMs].sort((a, b) => a - b)[Math.floor(r.swapMs.length / 2)] ?? Number.NaN;
    out += `| ${r.plane} | ${r.hop} | ${r.swapping.failed} of ${r.swapping.requests} (${r.swapping.timeouts}) | ${r.rest.rps.toFixed(0)} | ${r.swapping.rps.toFixed(0)} (${(r.swapping.rps / r.rest.rps).toFixed(2)}×) | ${r.rest.p99Ms.toFixed(1)} ms | ${r.swapping.p99Ms.toFixed(1)} ms (${(r.swapping.p99Ms / r.rest.p99Ms).toFixed(2)}×) | ${median.toFixed(0)} |\n`;
  }
  return out;
}
