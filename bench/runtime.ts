/**
 * `npm run bench:runtime`, in one run, loopback only, printing ratios and never asserting timings:
 *  1. req/s and p99 through the node's `/app/<uuid>` proxy against the same app reached directly,
 *     through a plain node:http piping proxy, and through nginx (when installed); small responses
 *     and 1 MiB bodies;
 *  2. cold start per runtime (process, wasm, docker when dockerd answers): a real supervisor
 *     process is asked to start an example app, and the clock runs from the POST to the first 200
 *     on the app address and through the node's `/app/<uuid>`; RSS of each runner and workload;
 *  3. the hop the runner adds ("Swaps without moving the address" in ARCHITECTURE.md): a workload
 *     under a real runner, reached on its private port vs through the runner's app address :8730
 *     vs through the node and the runner.
 * `BENCH_ONLY=proxy|cold|hop` (comma-separated) runs a part alone.
 *
 * Every server runs in its own process (this file re-executed with `--serve <role>`), so the load
 * generator, each proxy and the app do not share an event loop. Load comes from wrk. Targets are
 * measured in alternating rounds and the median kept, and each proxy's CPU time per request is read
 * from /proc: on a busy machine req/s swings with the neighbours, CPU per request much less.
 */

import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { APP_PORT, deriveAppLoopback } from "../src/core/address.js";
import { freeLoopbackPort } from "../src/core/net.js";
import { streamingProcessFlags } from "../src/core/node-flags.js";
import { readProcStatSync } from "../src/core/proc-stat.js";
import { sleep } from "../src/core/sleep.js";
import { startNode } from "../src/node/index.js";
import { wakePart } from "./wake.js";

const MiB = 1024 * 1024;
// Two-second cells keep the whole bench near two minutes; rounds and medians absorb the noise.
const durationSecs = Number(process.env.BENCH_DURATION_SECS ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
const coldRuns = Number(process.env.BENCH_COLD_RUNS ?? 5);
const only = new Set((process.env.BENCH_ONLY ?? "proxy,cold,hop,wake").split(",").map((p) => p.trim()));
/** dist/bench/runtime.js → the repository root. */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tabbifyEntry = join(repoRoot, "dist", "src", "main", "tabbify.js");
/** Linux reports process CPU time in clock ticks; 100 per second on every mainstream kernel. */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

interface Served {
  url: string;
  /** The nginx master behind a node with the nginx data plane. */
  edgePid?: number;
}

/** Prints the one line the parent waits for. */
function announce(served: Served): void {
  process.stdout.write(`${JSON.stringify(served)}\n`);
}

/**
 * The app every proxy under test forwards to: `/1m` answers 1 MiB, `/port` the port it serves
 * on (so a swap's target can be told apart), anything else `hello\n`.
 */
function benchApp(port: number): http.Server {
  const big = Buffer.alloc(MiB, 0x61);
  return http.createServer((req, res) => {
    req.resume();
    if (req.url === "/1m") {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": big.length });
      res.end(big);
    } else {
      const text = req.url === "/port" ? String(port) : "hello\n";
      res.writeHead(200, { "content-type": "text/plain", "content-length": text.length });
      res.end(text);
    }
  });
}

async function serveApp(uuid: string): Promise<void> {
  const server = benchApp(APP_PORT);
  const host = deriveAppLoopback(uuid);
  await new Promise<void>((r) => server.listen(APP_PORT, host, r));
  announce({ url: `http://${host}:${APP_PORT}` });
}

async function serveNode(uuid: string): Promise<void> {
  // The key comes from the parent: the bench's supervisor and its runners register with it too.
  const nodeKey = process.env.TABBIFY_NODE_KEY ?? randomUUID();
  const dataPlane = process.env.BENCH_DATA_PLANE === "nginx" ? "nginx" : "node";
  // One nginx worker, like the hand-configured anchor: every proxy here gets one core.
  const node = await startNode({
    host: "127.0.0.1",
    port: 0,
    nodeKey,
    httpLogLevel: "silent",
    dataPlane,
    edgeWorkers: 1,
  });
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
  await node.edge?.settle();
  process.once("SIGTERM", () => void node.close().then(() => process.exit(0)));
  const edgePid = node.edge?.pid();
  announce({ url: `${node.url}/app/${uuid}`, ...(edgePid ? { edgePid } : {}) });
}

/**
 * The hop bench's workload, run by a real runner through the process runtime: the bench app on
 * the runner's HOST/PORT, plus `/port` so the bench can reach the private port directly.
 */
async function serveWorkload(): Promise<void> {
  const port = Number(process.env.PORT);
  const server = benchApp(port);
  await new Promise<void>((r) => server.listen(port, process.env.HOST ?? "127.0.0.1", r));
  process.once("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
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

function startChild(
  role: string,
  uuid: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; url: string; edgePid?: number }> {
  // Every proxy under test gets the same V8 flags our proxying processes run with, so the
  // comparison is of the proxy code, not of heap sizing.
  const child = spawn(
    process.execPath,
    [...streamingProcessFlags, fileURLToPath(import.meta.url), "--serve", role, uuid],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    },
  );
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve({ child, ...(JSON.parse(line) as Served) }));
    child.once("exit", (code) => reject(new Error(`${role} exited early (code ${code})`)));
  });
}

interface HandProxy {
  stop: () => Promise<void>;
  url: string;
  pid: number;
}

/**
 * A proxy engine configured by hand in a temp dir, in front of the app at `/app/<uuid>/`: found on
 * PATH (or in /usr/sbin), started in the foreground, ready once `/app/<uuid>/small` answers. The
 * reason it cannot run, when it is not installed.
 */
async function startHandProxy(
  engine: { bin: string; install: string; configFile: string },
  uuid: string,
  config: (dir: string, port: number) => string,
  args: (dir: string, configPath: string) => string[],
): Promise<HandProxy | string> {
  const which = spawnSync("sh", ["-c", `command -v ${engine.bin} || ls /usr/sbin/${engine.bin}`], {
    encoding: "utf8",
  });
  const bin = which.stdout.trim().split("\n")[0];
  if (!bin) return `${engine.bin} not installed (apt-get install -y ${engine.install})`;
  const dir = await mkdtemp(join(tmpdir(), `tabbify-bench-${engine.bin}-`));
  const port = await freeLoopbackPort();
  const configPath = join(dir, engine.configFile);
  await writeFile(configPath, config(dir, port));
  const child = spawn(bin, args(dir, configPath), { stdio: "inherit" });
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

function startNginx(upstreamHost: string, uuid: string): Promise<HandProxy | string> {
  // One worker: every node proxy here is one process on one core, so nginx gets the same.
  return startHandProxy(
    { bin: "nginx", install: "nginx-light", configFile: "nginx.conf" },
    uuid,
    (dir, port) => `
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
`,
    (dir, configPath) => ["-p", dir, "-c", configPath, "-g", "daemon off;"],
  );
}

/** A second engine measured by hand for the data-plane choice (docs/DECISIONS.md). */
function startHaproxy(upstreamHost: string, uuid: string): Promise<HandProxy | string> {
  return startHandProxy(
    { bin: "haproxy", install: "haproxy", configFile: "haproxy.cfg" },
    uuid,
    (_dir, port) => `
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend edge
  bind 127.0.0.1:${port}
  default_backend app
backend app
  http-request replace-path /app/${uuid}(/.*)? \\1
  server app ${upstreamHost}:${APP_PORT}
`,
    (_dir, configPath) => ["-db", "-f", configPath],
  );
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
    await sleep(50);
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
    const stat = readProcStatSync(p);
    return stat ? (stat.utimeTicks + stat.stimeTicks) / CLOCK_TICKS : 0;
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
const EDGE = "tabbify --data-plane nginx";
const HAPROXY = "haproxy (1 thread)";
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
      for (const name of [EDGE, HAPROXY]) {
        const other = row(name);
        if (other)
          parts.push(
            `${name}/nginx req/s ${(other.rps / nginx.rps).toFixed(2)} cpu/req ${(other.cpuUs / nginx.cpuUs).toFixed(2)}`,
          );
      }
    }
    process.stdout.write(`  ${body.padEnd(12)} ${parts.join("   ")}\n`);
  }
}

async function proxyPart(uuid: string, ours: { child: ChildProcess; url: string }): Promise<void> {
  const children: ChildProcess[] = [];
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
  let haproxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  try {
    const app = await startChild("app", uuid);
    children.push(app.child);
    const plain = await startChild("plain", uuid);
    children.push(plain.child);
    nginx = await startNginx(deriveAppLoopback(uuid), uuid);
    const edge = await startChild("node", uuid, { BENCH_DATA_PLANE: "nginx" });
    children.push(edge.child);
    haproxy = await startHaproxy(deriveAppLoopback(uuid), uuid);

    const targets: Target[] = [
      { name: "direct", url: app.url, pids: [app.child.pid ?? 0] },
      { name: "plain node:http proxy", url: plain.url, pids: [plain.child.pid ?? 0] },
      { name: OURS, url: ours.url, pids: [ours.child.pid ?? 0] },
    ];
    if (typeof nginx !== "string") targets.push({ name: NGINX, url: nginx.url, pids: [nginx.pid] });
    // The node's CPU counts too: it stays in the process tree behind the edge.
    targets.push({ name: EDGE, url: edge.url, pids: [edge.child.pid ?? 0, edge.edgePid ?? 0] });
    if (typeof haproxy !== "string") targets.push({ name: HAPROXY, url: haproxy.url, pids: [haproxy.pid] });

    process.stdout.write(
      `\n## 1. proxy: wrk -t1 -c${connections}, ${rounds} alternating rounds of ${durationSecs} s per cell (median kept)\n` +
        "every proxy is one process with keep-alive pooling to the app; cpu/req is that process's CPU (the app's for direct)\n",
    );
    if (typeof nginx === "string") process.stdout.write(`nginx: ${nginx}\n`);
    printReport(await measure(targets, rounds, durationSecs));
  } finally {
    if (nginx && typeof nginx !== "string") await nginx.stop();
    if (haproxy && typeof haproxy !== "string") await haproxy.stop();
    for (const c of children) await stopChild(c);
  }
}

interface Target {
  name: string;
  url: string;
  /** Processes whose CPU time is charged to this target. */
  pids: number[];
}

/** Alternating wrk rounds over every target, per body; medians per cell. */
async function measure(targets: Target[], roundCount: number, secs: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [body, path] of BODIES) {
    const samples = new Map<string, { rps: number[]; p99: number[]; cpuUs: number[]; errors: number }>();
    for (const t of targets) {
      await waitForHttp(`${t.url}${path}`);
      await wrk(`${t.url}${path}`, 1);
      samples.set(t.name, { rps: [], p99: [], cpuUs: [], errors: 0 });
    }
    for (let round = 0; round < roundCount; round++) {
      for (const t of targets) {
        const cpu = () => t.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
        const cpuBefore = cpu();
        const r = await wrk(`${t.url}${path}`, secs);
        const used = cpu() - cpuBefore;
        const s = samples.get(t.name)!;
        s.rps.push(r.rps);
        s.p99.push(r.p99Ms);
        s.cpuUs.push(r.requests > 0 ? (used * 1e6) / r.requests : Number.NaN);
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
  return rows;
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGTERM");
  await exited;
}

function table(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return `${fmt(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n${rows.map(fmt).join("\n")}\n`;
}

/** Resident set size of one process in MiB, from /proc (undefined once it is gone). */
function rssMiB(pid: number | null | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

const mib = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));

/** A real `tabbify supervisor` process on a temp data dir, registered with the bench's node. */
class BenchSupervisor {
  private child: ChildProcess | undefined;
  private output = "";
  port = 0;
  readonly apiKey = randomBytes(32).toString("base64url");

  private constructor(readonly dataDir: string) {}

  static async start(nodeUrl: string, nodeKey: string, extraArgs: string[] = []): Promise<BenchSupervisor> {
    const sup = new BenchSupervisor(await mkdtemp(join(tmpdir(), "tabbify-bench-sup-")));
    // The supervisor reads its API key from <data>/api.key; the bench writes it first to know it.
    await writeFile(join(sup.dataDir, "api.key"), `${sup.apiKey}\n`, { mode: 0o600 });
    sup.port = await freeLoopbackPort();
    const child = spawn(
      process.execPath,
      [
        tabbifyEntry,
        "supervisor",
        "--name",
        "bench",
        "--data",
        sup.dataDir,
        "--listen",
        `127.0.0.1:${sup.port}`,
        "--mesh",
        "local",
        "--node",
        nodeUrl,
        ...extraArgs,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TABBIFY_NODE_KEY: nodeKey } },
    );
    sup.child = child;
    const keep = (d: Buffer) => {
      sup.output = (sup.output + d.toString()).slice(-8192);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    // ~3 s on an idle machine; many times that at a load of 20 and more.
    const end = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the supervisor exited: ${sup.output}`);
      const ok = await fetch(`${sup.base}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return sup;
      if (Date.now() > end) throw new Error(`the supervisor did not answer /health: ${sup.output}`);
      await sleep(50);
    }
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Until the supervisor is at rest: its warm spare booted (with a settle for its prewarm) and none booting. */
  async spareAtRest(): Promise<void> {
    const end = Date.now() + 30_000;
    for (;;) {
      const { json } = await this.call("GET", "/health");
      const spares = json.warm_spares as { ready: number; booting: number } | undefined;
      if (spares && spares.ready > 0 && spares.booting === 0) break;
      if (Date.now() > end) throw new Error(`no warm spare got ready: ${JSON.stringify(spares)}`);
      await sleep(25);
    }
    // A spare answers once its runner modules are loaded; its standby wasm host boots on beside it.
    await sleep(500);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    try {
      return { status: res.status, json: JSON.parse(text) as Record<string, unknown> };
    } catch {
      return { status: res.status, json: { text } };
    }
  }

  /** Purges every app still here (runners outlive their supervisor), then stops the supervisor. */
  async close(): Promise<void> {
    try {
      const { json } = await this.call("GET", "/v1/apps");
      for (const app of (json.apps as { uuid: string }[] | undefined) ?? []) {
        await this.call("POST", `/v1/apps/${app.uuid}/purge`).catch(() => {});
      }
    } catch {
      // the supervisor is gone already
    }
    if (this.child) await stopChild(this.child);
    if (!process.env.BENCH_KEEP) await rm(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Polls `url` on fresh connections until it answers 200; returns the time since `t0`. A refused
 * connection or a 503 from a runner still starting costs well under a millisecond, so the poll is
 * tight (5 ms): the figure is the workload's, not the poller's.
 */
async function firstOk(
  url: string,
  t0: number,
  gaveUp: { reason?: string },
  timeoutMs = 30_000,
): Promise<number> {
  const u = new URL(url);
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.get(
        { host: u.hostname, port: u.port, path: u.pathname + u.search, agent: false, timeout: 2_000 },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", () => resolve(0));
        },
      );
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve(0));
    });
    const now = performance.now();
    if (status === 200) return now - t0;
    if (gaveUp.reason) throw new Error(gaveUp.reason);
    if (now - t0 > timeoutMs) throw new Error(`${url} gave no 200 within ${timeoutMs} ms`);
    await sleep(5);
  }
}

interface ColdCase {
  runtime: string;
  spec: Record<string, unknown>;
  path: string;
}

interface ColdSample {
  apiMs: number;
  directMs: number;
  nodeMs: number;
  runnerRss: number | undefined;
  workloadRss: number | undefined;
}

/** One start → first 200, on the app address and through the node; then the app is purged. */
async function coldStart(sup: BenchSupervisor, nodeBase: string, c: ColdCase): Promise<ColdSample> {
  const uuid = randomUUID();
  const gaveUp: { reason?: string } = {};
  const t0 = performance.now();
  let apiMs = 0;
  const started = sup.call("POST", `/v1/apps/${uuid}/start`, c.spec).then((r) => {
    apiMs = performance.now() - t0;
    if (r.status !== 200)
      gaveUp.reason = `start ${c.runtime} answered ${r.status}: ${JSON.stringify(r.json)}`;
    return r;
  });
  try {
    const [directMs, nodeMs] = await Promise.all([
      firstOk(`http://${deriveAppLoopback(uuid)}:${APP_PORT}${c.path}`, t0, gaveUp),
      firstOk(`${nodeBase}/app/${uuid}${c.path}`, t0, gaveUp),
    ]);
    await started;
    const { json } = await sup.call("GET", `/v1/apps/${uuid}`);
    return {
      apiMs,
      directMs,
      nodeMs,
      runnerRss: rssMiB(json.pid as number | null),
      workloadRss: rssMiB(json.workload_pid as number | null),
    };
  } finally {
    await started.catch(() => {});
    await sup.call("POST", `/v1/apps/${uuid}/purge`).catch(() => {});
  }
}

const BENCH_IMAGE = "tabbify-bench-hello:1";

/** The docker case when the supervisor says docker works: examples/hello-docker on a scratch image. */
async function dockerCase(sup: BenchSupervisor): Promise<ColdCase | string> {
  const { json } = await sup.call("GET", "/health");
  if (!(json.tags as string[] | undefined)?.includes("docker"))
    return "dockerd does not answer: docker skipped";
  if (spawnSync("docker", ["image", "inspect", BENCH_IMAGE], { stdio: "ignore" }).status !== 0) {
    try {
      const { buildScratchImage } = await import("../test/support/tools.js");
      const script = await readFile(join(repoRoot, "examples", "hello-docker", "start.sh"), "utf8");
      // start.sh traps SIGTERM, so each purge stops the container at once, not after a grace period.
      await buildScratchImage(BENCH_IMAGE, { command: ["sh", "/start.sh"], files: { "/start.sh": script } });
    } catch (err) {
      return `cannot build ${BENCH_IMAGE}: ${(err as Error).message}`;
    }
  }
  return { runtime: "docker", spec: { runtime: "docker", image: BENCH_IMAGE }, path: "/" };
}

async function coldPart(
  sup: BenchSupervisor,
  spareless: BenchSupervisor,
  nodeBase: string,
  nodePid: number,
): Promise<void> {
  const cases: ColdCase[] = [
    {
      runtime: "process",
      spec: {
        runtime: "process",
        artifact_dir: join(repoRoot, "examples", "hello-node"),
        command: ["node", "server.js"],
      },
      path: "/",
    },
    {
      runtime: "wasm",
      spec: { runtime: "wasm", artifact_dir: join(repoRoot, "examples", "hello-wasm"), entry: "hello.wasm" },
      path: "/",
    },
  ];
  const docker = await dockerCase(sup);
  if (typeof docker === "string") process.stdout.write(`${docker}\n`);
  else cases.push(docker);

  process.stdout.write(
    `\n## 2. cold start: POST /v1/apps/<uuid>/start on a real supervisor → first 200, median of ${coldRuns} runs (min–max), purged in between; load average ${loadavg()[0]!.toFixed(1)}\n` +
      "   API = the start call returned; app addr = first 200 on <app address>:8730; via node = first 200 through the node's /app/<uuid>\n" +
      "   spare = a supervisor at rest (its warm spare runner booted: the default); none = --warm-spares 0, or starts faster than spares boot\n",
  );
  const modes = [
    { label: "spare", sup, atRest: () => sup.spareAtRest() },
    { label: "none", sup: spareless, atRest: async () => {} },
  ];
  const rows: string[][] = [];
  for (const c of cases) {
    for (const mode of modes) {
      // One unmeasured start warms the page cache and the supervisor's code paths.
      await mode.atRest();
      await coldStart(mode.sup, nodeBase, c);
      const samples: ColdSample[] = [];
      for (let i = 0; i < coldRuns; i++) {
        await mode.atRest();
        samples.push(await coldStart(mode.sup, nodeBase, c));
      }
      const spread = (pick: (s: ColdSample) => number) => {
        const v = samples.map(pick);
        return `${median(v).toFixed(0)} (${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)})`;
      };
      const direct = median(samples.map((s) => s.directMs));
      rows.push([
        c.runtime,
        mode.label,
        spread((s) => s.apiMs),
        spread((s) => s.directMs),
        spread((s) => s.nodeMs),
        c.runtime === "docker" ? "-" : (direct / 300).toFixed(2),
        mib(median(samples.map((s) => s.runnerRss ?? Number.NaN))),
        mib(median(samples.map((s) => s.workloadRss ?? Number.NaN))),
      ]);
    }
  }
  process.stdout.write(
    table(
      [
        "runtime",
        "runner",
        "API ms",
        "app addr ms",
        "via node ms",
        "app addr / 300 ms aim",
        "runner RSS MiB",
        "workload RSS MiB",
      ],
      rows,
    ),
  );
  process.stdout.write(
    `   node RSS ${mib(rssMiB(nodePid))} MiB, supervisor RSS ${mib(rssMiB(sup.pid))} MiB; ` +
      "wasm workload = the wasm-host process with its worker threads; docker workload = the container's init\n",
  );
}

/** The runner's extra hop: the same workload on its private port, through :8730, through the node. */
async function hopPart(sup: BenchSupervisor, nodeBase: string, nodePid: number): Promise<void> {
  const uuid = randomUUID();
  const self = fileURLToPath(import.meta.url);
  const spec = {
    runtime: "process",
    artifact_dir: dirname(self),
    command: [process.execPath, self, "--serve", "workload", uuid],
  };
  const started = await sup.call("POST", `/v1/apps/${uuid}/start`, spec);
  if (started.status !== 200) throw new Error(`hop workload did not start: ${JSON.stringify(started.json)}`);
  try {
    const { json } = await sup.call("GET", `/v1/apps/${uuid}`);
    const runnerPid = json.pid as number;
    const workloadPid = json.workload_pid as number;
    const appUrl = `http://${deriveAppLoopback(uuid)}:${APP_PORT}`;
    const privatePort = await (await fetch(`${appUrl}/port`)).text();
    const hopRounds = Math.max(2, rounds - 1);
    process.stdout.write(
      `\n## 3. the runner's hop: one workload under a real runner, wrk -t1 -c${connections}, ${hopRounds} rounds of ${durationSecs} s (median)\n` +
        "   cpu/req = the workload's CPU for direct, the runner's for :8730, node + runner for /app/<uuid>\n",
    );
    const rows = await measure(
      [
        { name: "direct", url: `http://127.0.0.1:${privatePort}`, pids: [workloadPid] },
        { name: "runner :8730", url: appUrl, pids: [runnerPid] },
        { name: "node /app → runner", url: `${nodeBase}/app/${uuid}`, pids: [nodePid, runnerPid] },
      ],
      hopRounds,
      durationSecs,
    );
    const header = [
      "body",
      "path",
      "req/s",
      "p99 ms",
      "cpu µs/req",
      "req/s vs direct",
      "p99 +ms vs direct",
      "errors",
    ];
    process.stdout.write(
      table(
        header,
        rows.map((r) => {
          const direct = rows.find((x) => x.body === r.body && x.target === "direct")!;
          return [
            r.body,
            r.target,
            r.rps.toFixed(0),
            r.p99Ms.toFixed(2),
            r.cpuUs.toFixed(0),
            (r.rps / direct.rps).toFixed(2),
            (r.p99Ms - direct.p99Ms).toFixed(2),
            String(r.errors),
          ];
        }),
        2,
      ),
    );
    process.stdout.write(
      `   after load: runner RSS ${mib(rssMiB(runnerPid))} MiB, workload RSS ${mib(rssMiB(workloadPid))} MiB, node RSS ${mib(rssMiB(nodePid))} MiB\n`,
    );
  } finally {
    await sup.call("POST", `/v1/apps/${uuid}/purge`).catch(() => {});
  }
}

async function main(): Promise<void> {
  if (spawnSync("sh", ["-c", "command -v wrk"]).status !== 0) {
    process.stderr.write("bench:runtime needs wrk: apt-get install -y wrk\n");
    process.exitCode = 1;
    return;
  }
  const started = performance.now();
  const uuid = randomUUID();
  const nodeKey = randomUUID();
  const ours = await startChild("node", uuid, { TABBIFY_NODE_KEY: nodeKey });
  const nodePid = ours.child.pid ?? 0;
  const nodeBase = new URL(ours.url).origin;
  let sup: BenchSupervisor | undefined;
  let spareless: BenchSupervisor | undefined;
  try {
    process.stdout.write(
      `bench:runtime: loopback, ${cpus().length} cores, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}, node ${process.version}\n`,
    );
    if (only.has("proxy")) await proxyPart(uuid, ours);
    if (only.has("cold") || only.has("hop")) {
      sup = await BenchSupervisor.start(nodeBase, nodeKey);
      if (only.has("cold")) {
        spareless = await BenchSupervisor.start(nodeBase, nodeKey, ["--warm-spares", "0"]);
        await coldPart(sup, spareless, nodeBase, nodePid);
      }
      if (only.has("hop")) await hopPart(sup, nodeBase, nodePid);
    }
    if (only.has("wake")) {
      sup ??= await BenchSupervisor.start(nodeBase, nodeKey);
      process.stdout.write(
        `\n## 4. on_request: first request after idle (wake included), median of ${coldRuns} wakes (min–max); runner RSS while idle\n`,
      );
      const rows = await wakePart(sup, repoRoot, coldRuns, rssMiB);
      process.stdout.write(
        table(
          [
            "runtime",
            "first request ms",
            "aim ms",
            "app booted alone ms",
            "idle runner RSS MiB",
            "booted ahead RSS MiB",
          ],
          rows,
        ),
      );
    }
    process.stdout.write(
      `\nbench:runtime took ${((performance.now() - started) / 1000).toFixed(0)} s; load average now ${loadavg()[0]!.toFixed(1)}\n`,
    );
  } finally {
    await sup?.close();
    await spareless?.close();
    await stopChild(ours.child);
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
    workload: serveWorkload,
  };
  const serve = role ? roles[role] : undefined;
  if (!serve) throw new Error(`unknown --serve role ${role}`);
  await serve(uuid);
} else {
  await main();
}
