/**
 * `npm run bench:runtime`: req/s and p99 through the node's `/app/<uuid>` proxy, measured in one
 * run against the same app reached directly, through a plain node:http piping proxy, and through
 * nginx (when installed). Small responses and 1 MiB bodies. Loopback only; prints ratios and
 * never asserts timings.
 *
 * Every server runs in its own process (this file re-executed with `--serve <role>`), so the load
 * generator, each proxy and the app do not share an event loop. Load comes from wrk. Targets are
 * measured in alternating rounds and the median kept, and each proxy's CPU time per request is read
 * from /proc: on a busy machine req/s swings with the neighbours, CPU per request much less.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { startNode } from "../src/node/index.js";

const MiB = 1024 * 1024;
const durationSecs = Number(process.env.BENCH_DURATION_SECS ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
/** Linux reports process CPU time in clock ticks; 100 per second on every mainstream kernel. */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

interface Served {
  url: string;
}

/** Prints the one line the parent waits for. */
function announce(served: Served): void {
  process.stdout.write(`${JSON.stringify(served)}\n`);
}

async function serveApp(uuid: string): Promise<void> {
  const big = Buffer.alloc(MiB, 0x61);
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === "/1m") {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": big.length });
      res.end(big);
    } else {
      res.writeHead(200, { "content-type": "text/plain", "content-length": 6 });
      res.end("hello\n");
    }
  });
  const host = deriveAppLoopback(uuid);
  await new Promise<void>((r) => server.listen(APP_PORT, host, r));
  announce({ url: `http://${host}:${APP_PORT}` });
}

async function serveNode(uuid: string): Promise<void> {
  const node = await startNode({ host: "127.0.0.1", port: 0, nodeKey: randomUUID(), httpLogLevel: "silent" });
  // A roster entry that never expires during the bench: re-registered well inside the timeout.
  const register = () =>
    node.coordinator.register({
      kind: "runner",
      name: uuid,
      app_uuid: uuid,
      address: `${deriveAppLoopback(uuid)}:${APP_PORT}`,
      ula: deriveAppLoopback(uuid),
      version: "bench",
      tags: ["runner"],
    });
  register();
  setInterval(register, 10_000);
  announce({ url: `${node.url}/app/${uuid}` });
}

/** The anchor: the proxy most people write with node:http, given the same keep-alive pooling. */
async function servePlainProxy(uuid: string): Promise<void> {
  const host = deriveAppLoopback(uuid);
  const agent = new http.Agent({ keepAlive: true });
  const prefix = `/app/${uuid}`;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").slice(prefix.length) || "/";
    const upstream = http.request(
      { host, port: APP_PORT, method: req.method, path, headers: req.headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  announce({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${prefix}` });
}

function startChild(role: string, uuid: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", role, uuid], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve({ child, url: (JSON.parse(line) as Served).url }));
    child.once("exit", (code) => reject(new Error(`${role} exited early (code ${code})`)));
  });
}

async function startNginx(
  upstreamHost: string,
  uuid: string,
): Promise<{ stop: () => Promise<void>; url: string; pid: number } | string> {
  const which = spawnSync("sh", ["-c", "command -v nginx || ls /usr/sbin/nginx"], { encoding: "utf8" });
  const bin = which.stdout.trim().split("\n")[0];
  if (!bin) return "nginx not installed (apt-get install -y nginx-light)";
  const dir = await mkdtemp(join(tmpdir(), "tabbify-bench-nginx-"));
  const port = await freePort();
  // One worker: every node proxy here is one process on one core, so nginx gets the same.
  const conf = `
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
  upstream app { server ${upstreamHost}:${APP_PORT}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location /app/${uuid}/ {
      proxy_pass http://app/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
  await writeFile(join(dir, "nginx.conf"), conf);
  const child = spawn(bin, ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], {
    stdio: "inherit",
  });
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

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string): Promise<void> {
  const end = Date.now() + 5000;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`${url} did not answer within 5 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Result {
  rps: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/** CPU seconds used so far by a process and its direct children (nginx's worker). */
function cpuSeconds(pid: number): number {
  const own = (p: number): number => {
    try {
      // Fields after the parenthesised command: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    // No children file (older kernels): count the process alone.
  }
  return children.reduce((sum, c) => sum + own(c), own(pid));
}

function median(values: number[]): number {
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

function wrk(url: string, secs: number): Promise<Result> {
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

const OURS = "tabbify node /app/<uuid>";
const NGINX = "nginx (1 worker)";
const BODIES = [
  ["small (6 B)", "/small"],
  ["1 MiB", "/1m"],
] as const;

interface Row {
  body: string;
  target: string;
  rps: number;
  p99Ms: number;
  cpuUs: number;
  errors: number;
}

function printReport(rows: Row[]): void {
  const header = ["body", "target", "req/s", "p99 ms", "cpu µs/req", "req/s vs direct", "errors"];
  const table = rows.map((r) => {
    const direct = rows.find((x) => x.body === r.body && x.target === "direct")!.rps;
    return [
      r.body,
      r.target,
      r.rps.toFixed(0),
      r.p99Ms.toFixed(2),
      r.cpuUs.toFixed(0),
      (r.rps / direct).toFixed(2),
      String(r.errors),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  process.stdout.write(`\n${fmt(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n`);
  for (const row of table) process.stdout.write(`${fmt(row)}\n`);

  process.stdout.write("\nratios for ours (req/s: higher is better; cpu/req: lower is better):\n");
  for (const [body] of BODIES) {
    const row = (t: string) => rows.find((x) => x.body === body && x.target === t);
    const ours = row(OURS)!;
    const plain = row("plain node:http proxy")!;
    const nginx = row(NGINX);
    const parts = [
      `ours/plain-node req/s ${(ours.rps / plain.rps).toFixed(2)} cpu/req ${(ours.cpuUs / plain.cpuUs).toFixed(2)}`,
    ];
    if (nginx) {
      parts.push(
        `ours/nginx req/s ${(ours.rps / nginx.rps).toFixed(2)} cpu/req ${(ours.cpuUs / nginx.cpuUs).toFixed(2)}`,
      );
    }
    process.stdout.write(`  ${body.padEnd(12)} ${parts.join("   ")}\n`);
  }
}

async function main(): Promise<void> {
  if (spawnSync("sh", ["-c", "command -v wrk"]).status !== 0) {
    process.stderr.write("bench:runtime needs wrk: apt-get install -y wrk\n");
    process.exitCode = 1;
    return;
  }
  const uuid = randomUUID();
  const children: ChildProcess[] = [];
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
  try {
    const app = await startChild("app", uuid);
    children.push(app.child);
    const ours = await startChild("node", uuid);
    children.push(ours.child);
    const plain = await startChild("plain", uuid);
    children.push(plain.child);
    nginx = await startNginx(deriveAppLoopback(uuid), uuid);

    const targets: { name: string; url: string; pid: number }[] = [
      { name: "direct", url: app.url, pid: app.child.pid ?? 0 },
      { name: "plain node:http proxy", url: plain.url, pid: plain.child.pid ?? 0 },
      { name: OURS, url: ours.url, pid: ours.child.pid ?? 0 },
    ];
    if (typeof nginx !== "string") targets.push({ name: NGINX, url: nginx.url, pid: nginx.pid });

    const cores = (await import("node:os")).cpus().length;
    const load = (await import("node:os")).loadavg()[0]!.toFixed(1);
    process.stdout.write(
      `bench:runtime: wrk -t1 -c${connections}, ${rounds} alternating rounds of ${durationSecs} s per cell (median kept), ` +
        `loopback, ${cores} cores, load average ${load}, node ${process.version}\n` +
        "every proxy is one process with keep-alive pooling to the app; cpu/req is that process's CPU (the app's for direct)\n",
    );
    if (typeof nginx === "string") process.stdout.write(`nginx: ${nginx}\n`);

    const rows: Row[] = [];
    for (const [body, path] of BODIES) {
      const samples = new Map<string, { rps: number[]; p99: number[]; cpuUs: number[]; errors: number }>();
      for (const t of targets) {
        await waitForHttp(`${t.url}${path}`);
        await wrk(`${t.url}${path}`, 1);
        samples.set(t.name, { rps: [], p99: [], cpuUs: [], errors: 0 });
      }
      for (let round = 0; round < rounds; round++) {
        for (const t of targets) {
          const cpuBefore = cpuSeconds(t.pid);
          const r = await wrk(`${t.url}${path}`, durationSecs);
          const cpu = cpuSeconds(t.pid) - cpuBefore;
          const s = samples.get(t.name)!;
          s.rps.push(r.rps);
          s.p99.push(r.p99Ms);
          s.cpuUs.push(r.requests > 0 ? (cpu * 1e6) / r.requests : Number.NaN);
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
          cpuUs: median(s.cpuUs),
          errors: s.errors,
        });
      }
    }
    printReport(rows);
  } finally {
    if (nginx && typeof nginx !== "string") await nginx.stop();
    for (const c of children) {
      c.kill("SIGTERM");
      if (c.exitCode === null) await new Promise((r) => c.once("exit", r));
    }
  }
}

const serveIndex = process.argv.indexOf("--serve");
if (serveIndex !== -1) {
  const role = process.argv[serveIndex + 1];
  const uuid = process.argv[serveIndex + 2] ?? "";
  const roles: Record<string, (uuid: string) => Promise<void>> = {
    app: serveApp,
    node: serveNode,
    plain: servePlainProxy,
  };
  const serve = role ? roles[role] : undefined;
  if (!serve) throw new Error(`unknown --serve role ${role}`);
  await serve(uuid);
} else {
  await main();
}
