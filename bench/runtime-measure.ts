/**
 * What `bench:runtime` measures with: wrk runs, CPU time per process from /proc, alternating
 * rounds with medians, the hand-configured nginx anchor, and plain-text tables.
 */

import { execFile, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeLoopbackPort } from "../src/core/net.js";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";

export const BODIES = [
  ["small (6 B)", "/small"],
  ["1 MiB", "/1m"],
] as const;

/** Linux reports process CPU time in clock ticks; 100 per second on every mainstream kernel. */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

export interface WrkResult {
  rps: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

function ownCpu(pid: number): number {
  const stat = readProcStatSync(pid);
  return stat ? (stat.utimeTicks + stat.stimeTicks) / CLOCK_TICKS : 0;
}

/** CPU seconds used so far by a process and, with `tree`, its direct children (an engine's workers). */
export function cpuSeconds(pid: number, tree = true): number {
  if (!pid) return 0;
  let children: number[] = [];
  if (tree) {
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      // No children file (older kernels): count the process alone.
    }
  }
  return children.reduce((sum, c) => sum + ownCpu(c), ownCpu(pid));
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

export function wrk(url: string, secs: number, connections: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    execFile(
      "wrk",
      ["-t1", `-c${connections}`, `-d${secs}s`, "--latency", url],
      { maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err) return reject(err);
        const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
        const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
        const p99 = /^\s*99%\s+(\S+)/m.exec(stdout)?.[1] ?? "";
        const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
        const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
        const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
        resolve({ rps, p99Ms: toMs(p99), requests, errors });
      },
    );
  });
}

export async function waitForHttp(url: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** One process whose CPU is charged to a target, under the label the report prints. */
export interface ChargedProcess {
  label: string;
  pid: number;
  /** Count its direct children too (an engine master's workers). */
  tree?: boolean;
}

export interface Target {
  name: string;
  url: string;
  procs: ChargedProcess[];
}

export interface Row {
  body: string;
  target: string;
  rps: number;
  p99Ms: number;
  /** Median CPU µs per request, per charged process label. */
  cpuUs: Record<string, number>;
  errors: number;
}

export const totalCpu = (row: Row) => Object.values(row.cpuUs).reduce((a, b) => a + b, 0);

/** Alternating wrk rounds over every target, per body; medians per cell. */
export async function measure(
  targets: Target[],
  opts: { rounds: number; secs: number; connections: number },
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [body, path] of BODIES) {
    const samples = new Map<
      string,
      { rps: number[]; p99: number[]; cpu: Map<string, number[]>; errors: number }
    >();
    for (const t of targets) {
      await waitForHttp(`${t.url}${path}`);
      await wrk(`${t.url}${path}`, 1, opts.connections);
      samples.set(t.name, { rps: [], p99: [], cpu: new Map(t.procs.map((p) => [p.label, []])), errors: 0 });
    }
    for (let round = 0; round < opts.rounds; round++) {
      for (const t of targets) {
        const before = t.procs.map((p) => cpuSeconds(p.pid, p.tree ?? false));
        const r = await wrk(`${t.url}${path}`, opts.secs, opts.connections);
        const s = samples.get(t.name)!;
        t.procs.forEach((p, i) => {
          const used = cpuSeconds(p.pid, p.tree ?? false) - before[i]!;
          s.cpu.get(p.label)!.push(r.requests > 0 ? (used * 1e6) / r.requests : Number.NaN);
        });
        s.rps.push(r.rps);
        s.p99.push(r.p99Ms);
        s.errors += r.errors;
      }
    }
    for (const t of targets) {
      const s = samples.get(t.name)!;
      rows.push({
        body,
        target: t.name,
        rps: median(s.rps),
        p99Ms: median(s.p99),
        cpuUs: Object.fromEntries([...s.cpu].map(([label, v]) => [label, median(v)])),
        errors: s.errors,
      });
    }
  }
  return rows;
}

export function table(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return `${fmt(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n${rows.map(fmt).join("\n")}\n`;
}

export interface HandProxy {
  stop: () => Promise<void>;
  url: string;
  pid: number;
}

/**
 * The anchor: nginx configured by hand in a temp dir, as one would put it in front of an app
 * (one worker, keep-alive pool to the app, no access log), serving the app at `/app/<uuid>/`.
 * The reason it cannot run, when nginx is not installed.
 */
export async function startHandNginx(upstream: string, uuid: string): Promise<HandProxy | string> {
  const which = spawnSync("sh", ["-c", "command -v nginx || ls /usr/sbin/nginx"], { encoding: "utf8" });
  const bin = which.stdout.trim().split("\n")[0];
  if (!bin) return "nginx not installed (apt-get install -y nginx-light)";
  const dir = await mkdtemp(join(tmpdir(), "tabbify-bench-nginx-"));
  const port = await freeLoopbackPort();
  const configPath = join(dir, "nginx.conf");
  await writeFile(
    configPath,
    `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server ${upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location /app/${uuid}/ {
      proxy_pass http://app/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = spawn(bin, ["-p", dir, "-c", configPath, "-g", "daemon off;"], { stdio: "inherit" });
  await waitForHttp(`http://127.0.0.1:${port}/app/${uuid}/small`);
  return {
    url: `http://127.0.0.1:${port}/app/${uuid}`,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
